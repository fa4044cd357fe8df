"""The run store: one folder per fine-tuning run, readable while it runs and after it was killed.

    store = RunStore("runs")
    store.list()                       # tidy DataFrame, one row per run (columns: LIST_COLUMNS)
    run = store.get("fine_foods_minilm_b_only_r8_s0_1a2b3c4d")
    run.status, run.progress           # "running", {"step": 40, "total_steps": 150, "phase": "train"}
    run.metrics()                      # long frame: step, split, metric, value
    run.load_adapter(), run.load_init()   # asymviz.adapters.LoraAdapter, trained and at step 0

A run folder holds
- `run.json`: the record (schema below), rewritten atomically (tmp file + os.replace) as the run goes;
- `metrics.csv`: long form `step,split,metric,value`, appended and flushed line by line (live curves);
- `adapter/`: PEFT `save_pretrained` output, `base_model_name_or_path` a stable name (`minilm`, `smollm2`, an id);
- `init/`: the adapter at step 0 (`adapter_model.safetensors` in PEFT's key format + `adapter_config.json`);
  neither exists for mode head_only (no adapter; run.json `has_adapter: false`);
- `generations.jsonl`: a causal LM's greedy answers to fixed test questions;
- `split.json`: the row numbers of the train / validation / test examples;
- `CANCEL`: created by `RunStore.cancel` (or by hand); the run stops at its next step with status `cancelled`.

run.json (schema 1): schema, run_id, status (running | completed | failed | interrupted | cancelled), model, task,
mode, rank, seed, config (TrainConfig.to_dict()), data (task, source, labels, split seed/method, sizes, row
hashes), created_at / started_at / finished_at / updated_at (ISO 8601 UTC), heartbeat (unix s), host, pid,
pid_start, device, precision, versions {python, torch, transformers, peft, asymviz}, progress {step,
total_steps, phase}, trainable_params {lora, head, total}, head_modules, head_trained, frozen_check {factor,
modules, bit_identical} (null in mode ab), timings {load_s, prefix_s, train_s, eval_s, save_s, wall_s},
metrics {test_accuracy, test_macro_f1 | test_loss, test_perplexity, validation_..., train_loss,
examples_per_s | tokens_per_s, peak_memory_mb, peak_memory_kind}, error (one line, or null), plus the run's
setting: threads, world_size, base_model (the stable name), targets, layers, has_adapter, learning_rates
{lora_A, lora_B, head}, split_summary (asymviz.base.tasks.TaskData.split_summary: per split rows,
unique_texts, classes, largest_item_share, majority_accuracy), frozen_norms {factor, modules, row, col: {mean, min, max}} (null without a frozen factor).
The store itself holds `lr_selection.csv` (LR_FILE), `sweep.json` (SWEEP_FILE) and `.sweep/` (SWEEP_DIR); a
group folder may hold `mechanism.csv` (MECHANISM_FILE, asymviz.mechanism's table).
The run table (`RunStore.list()`) has the columns and dtypes of LIST_SCHEMA; `lr_ratio` and `head_lr` were added
(runs written before read 1.0 and their lr), then `head` (the head modules trained in full, comma-joined: run.json
head_modules, else the config's head), `targets` (the adapted module names, comma-joined) and `top_layers`; no
column was renamed. peak_memory_mb is the process's
peak RSS on a CPU (`process_max_rss`) and the peak allocated during the training steps on a GPU
(`cuda_max_allocated_training`, evaluations excluded).

`interrupted` is never written by a run: a record that says `running` reads as `interrupted` when its process is
gone (same host: pid + process start time checked) or its heartbeat is older than `STALE_S` (another host).
"""

from asymviz.runs.layout import (
    ADAPTER_CONFIG,
    ADAPTER_DIR,
    CANCEL_FILE,
    DEFAULT_STORE,
    GENERATIONS_FILE,
    INIT_DIR,
    LIST_COLUMNS,
    LIST_SCHEMA,
    LR_FILE,
    MECHANISM_FILE,
    METRIC_COLUMNS,
    METRICS_FILE,
    ROLES,
    RUN_FILE,
    SCHEMA,
    SPLIT_FILE,
    STALE_S,
    STATUSES,
    SWEEP_DIR,
    SWEEP_FILE,
    RunError,
    adapter_dir,
    annotate_run,
    generations_file,
    has_adapter_files,
    init_dir,
    is_run_folder,
    read_split,
    run_folder_of,
    utc_now,
    write_json_atomic,
    write_split,
    write_text_atomic,
)  # fmt: skip
from asymviz.runs.store import RunRecord, RunStore, list_runs, read_run_json, run_table
from asymviz.runs.writer import RunWriter

__all__ = [
    "ADAPTER_CONFIG", "ADAPTER_DIR", "CANCEL_FILE", "DEFAULT_STORE", "GENERATIONS_FILE", "INIT_DIR", "LIST_COLUMNS",
    "LIST_SCHEMA", "LR_FILE", "MECHANISM_FILE", "METRIC_COLUMNS", "METRICS_FILE", "ROLES", "RUN_FILE", "SCHEMA", "SPLIT_FILE",
    "STALE_S", "STATUSES", "SWEEP_DIR", "SWEEP_FILE", "RunError", "RunRecord", "RunStore", "RunWriter",
    "adapter_dir", "annotate_run", "generations_file", "has_adapter_files", "init_dir", "is_run_folder",
    "list_runs", "read_run_json", "read_split", "run_folder_of", "run_table", "utc_now", "write_json_atomic",
    "write_split", "write_text_atomic",
]  # fmt: skip
