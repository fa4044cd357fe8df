"""Replication v2 (issue 13): every GPU experiment as independent `asymviz sweep` processes, several per GPU,
each into its own store; `merge` assembles them into cached_runs/ afterwards.

    python bench/replication_v2.py plan                                  # the jobs and their exact commands
    python bench/replication_v2.py run STORE --gpus 0,1 --per-gpu 4 --deadline 520   # on the GPU machine
    python bench/replication_v2.py slim STORE                            # drop the weights nobody needs
    python bench/replication_v2.py merge STORE cached_runs               # here: one folder per experiment
    python bench/replication_v2.py ship cached_runs                      # thin what ships (see `ship`)
    python bench/replication_v2.py run STORE --cpu-check                 # tiny everything on the CPU

Jobs (one `asymviz sweep` each; `plan` prints the commands; every MiniLM sweep: query,value, 2 epochs of batch
32 at <= 128 tokens, bf16 autocast, packs of 12 runs, lr grid 1e-3..3e-2 (x3 steps) extended at its edges,
seeds 0-4):
- head_T          the head_only control of task T: its head-lr grid and 5 seeds           -> tasks_T
- tasks_T         exp 1, Table 1: head_only, ab (LoRA+ ratio 1/4/16 searched with the lr), b_only, a_only,
                  r = 8, 16 (reuses head_T's runs)                                         -> tasks_T
- rank_T_rR       exp 2, d/r: ab (ratio 1), b_only, a_only at rank R, head lr fixed to head_T's choice
                  (fine_foods, word_pos; R = 1 ... 64)                                     -> rank_T_rR
- cls_T           exp 3, head factorial: tasks_T at r = 8 with the head = classifier only  -> cls_T
- mech_T          exp 4, mechanism: LoRA on the top layer's value projection only, classifier head -> mech_T
- sim_T           exp 5, the 2x2: ab r = 8, init seeds 0-2 x seeds 0-1, lr 3e-3, head lr of head_T -> sim_T
- vit, vit_mech   exp 6 (and exp 4 on the ViT): the Fashion-MNIST ViT on mnist digits, 5 epochs, not packable
                  (image task): 12 runs in flight on one GPU                               -> vit, vit_mech
A job starts when the jobs it needs have finished; the ready job with the most work behind it goes first, on the GPU with the fewest
running jobs. At the deadline the running sweeps get SIGINT (their runs are recorded as cancelled, and the same
command resumes them: completed runs are skipped). STORE/replication_v2.json records every job's command, GPU,
start, wall time and exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TASKS = ("fine_foods", "tweet_source", "word_polarity", "word_pos", "chatterbot_topic")
RANK_TASKS = ("fine_foods", "word_pos")
RANKS = (1, 2, 4, 8, 16, 32, 64)
SIM_TASKS = ("fine_foods", "tweet_source", "word_polarity", "word_pos")
SEEDS = "0,1,2,3,4"
LRS = "1e-3,3e-3,1e-2,3e-2"
SIM_LR = "3e-3"
# rough GPU seconds of each job on one H200 (for ordering only): steps per run x runs / pack
COST = {
    "fine_foods": 1.0,
    "tweet_source": 1.2,
    "word_polarity": 0.8,
    "word_pos": 2.4,
    "chatterbot_topic": 0.2,
}

# experiment folder in cached_runs/ <- job store prefixes
EXPERIMENTS = {
    "minilm_tasks": ("tasks_",),
    "minilm_rank": ("rank_",),
    "minilm_head": ("cls_",),
    "minilm_mechanism": ("mech_",),
    "similarity": ("sim_",),
    "vit_mnist": ("vit",),
    "vit_mechanism": ("vitmech",),
}
# weights kept when slimming (a DataFrame.query over RunStore.list()); the rest keep run.json + metrics.csv
KEEP = {
    "tasks_": "role == 'main' and seed == 0 and rank == 8",
    "rank_": "seed < 0",  # none
    "cls_": "seed < 0",
    "mech_": "role == 'main'",
    "sim_": "seed >= 0",  # all
    "vit": "role == 'main' and seed == 0",
    "vitmech": "role == 'main'",
}


@dataclass
class Job:
    name: str
    store: str  # sub-folder of STORE
    args: list[str]
    needs: list[str] = field(default_factory=list)
    head_lr_from: str | None = None  # store whose head_only control's chosen lr becomes --head-lr
    cost: float = 1.0
    slots: int = 1


def minilm(cpu_check: bool) -> list[str]:
    out = ["--model", "minilm", "--targets", "query,value", "--epochs", "2", "--batch-size", "32", "--max-length",
           "128", "--save-dtype", "fp16", "--pack", "12"]  # fmt: skip
    if cpu_check:
        out += ["--max-train", "48", "--max-validation", "16", "--max-test", "16", "--epochs", "0.5",
                "--device", "cpu", "--threads", "1"]  # fmt: skip
    return out


def jobs(vit_model: str, cpu_check: bool = False) -> list[Job]:
    m, grid = minilm(cpu_check), ["--lrs", LRS, "--lr-extensions", "3"]
    seeds = ["--seeds", SEEDS]
    out: list[Job] = []
    for t in TASKS:
        c = COST[t]
        out.append(Job(f"head_{t}", f"tasks_{t}", [*m, "--tasks", t, "--modes", "head_only", *seeds, *grid],
                       cost=0.3 * c))  # fmt: skip
        out.append(Job(f"tasks_{t}", f"tasks_{t}", [*m, "--tasks", t, "--modes", "head_only,ab,b_only,a_only",
                                                     "--ranks", "8,16", "--lr-ratios", "1,4,16", *seeds, *grid],
                       needs=[f"head_{t}"], cost=10 * c))  # fmt: skip
        out.append(Job(f"cls_{t}", f"cls_{t}", [*m, "--tasks", t, "--modes", "head_only,ab,b_only,a_only",
                                                 "--ranks", "8", "--lr-ratios", "1,4,16", "--head", "classifier",
                                                 *seeds, *grid], cost=5 * c))  # fmt: skip
    for t in RANK_TASKS:
        for r in RANKS:
            out.append(Job(f"rank_{t}_r{r}", f"rank_{t}_r{r}", [*m, "--tasks", t, "--modes", "ab,b_only,a_only",
                                                                "--ranks", str(r), *seeds, *grid],
                           needs=[f"head_{t}"], head_lr_from=f"tasks_{t}", cost=3 * COST[t]))  # fmt: skip
        out.append(Job(f"mech_{t}", f"mech_{t}", [*m, "--tasks", t, "--modes", "head_only,ab,b_only,a_only",
                                                   "--ranks", "8", "--targets", "value", "--top-layers", "1",
                                                   "--head", "classifier", *seeds, *grid],
                       cost=3 * COST[t]))  # fmt: skip
    for t in SIM_TASKS:
        out.append(Job(f"sim_{t}", f"sim_{t}", [*m, "--tasks", t, "--modes", "ab", "--ranks", "8",
                                                 "--init-seeds", "0,1,2", "--seeds", "0,1", "--lr", SIM_LR],
                       needs=[f"head_{t}"], head_lr_from=f"tasks_{t}", cost=0.5 * COST[t]))  # fmt: skip
    vit = ["--model", vit_model, "--tasks", "mnist", "--ranks", "8", "--epochs", "5", "--batch-size", "32",
           "--save-dtype", "fp16", *seeds, *grid]  # fmt: skip
    if cpu_check:
        vit += ["--max-train", "48", "--max-validation", "16", "--max-test", "16", "--epochs", "0.5",
                "--device", "cpu", "--threads", "1"]  # fmt: skip
        where = []
    else:
        where = ["--gpus", "0", "--jobs-per-gpu", "12"]
    out.append(Job("vit", "vit", [*vit, "--modes", "head_only,ab,b_only,a_only", "--targets", "query,value",
                                  "--lr-ratios", "1,4,16", *where], cost=6, slots=2))  # fmt: skip
    out.append(Job("vit_mech", "vitmech", [*vit, "--modes", "head_only,ab,b_only,a_only", "--targets", "value",
                                           "--top-layers", "1", "--head", "classifier", *where],
                   cost=4, slots=2))  # fmt: skip
    return out


def chosen_head_lr(store: Path) -> float | None:
    """The lr the head_only control's grid chose in `store` (its counted runs' lr), or None."""
    from asymviz.runs import RunStore

    if not store.exists():
        return None
    frame = RunStore(store).list()
    if frame.empty:
        return None
    rows = frame[
        (frame["mode"] == "head_only") & (frame["role"] == "main") & (frame["status"] == "completed")
    ]
    lrs = sorted(set(rows["lr"].dropna()))
    return float(lrs[0]) if len(lrs) == 1 else None


def command(job: Job, store: Path) -> list[str]:
    argv = [sys.executable, "-m", "asymviz", "sweep", *job.args]
    if job.head_lr_from is not None:
        lr = chosen_head_lr(store / job.head_lr_from)
        if lr is None:
            raise RuntimeError(f"{job.name}: no head lr chosen in {job.head_lr_from}")
        argv += ["--head-lr", repr(lr)]
    return [*argv, "--store", str(store / job.store), "--name", job.name, "--quiet", "--format", "csv",
            "-o", str(store / "logs" / f"{job.name}.csv")]  # fmt: skip


def run(
    store: Path, gpus: list[str], per_gpu: int, deadline: float, cpu_check: bool, only: set | None
) -> int:
    store.mkdir(parents=True, exist_ok=True)
    (store / "logs").mkdir(exist_ok=True)
    t0 = time.time()
    vit_model = os.environ.get("ASYMVIZ_VIT", str(ROOT / "cached_runs" / "models" / "vit-fmnist"))
    todo = [j for j in jobs(vit_model, cpu_check) if only is None or j.name in only]
    names = {j.name for j in todo}
    # priority: a job's own cost plus what waits for it (the head-lr controls first: others need their choice)
    priority = {j.name: j.cost + sum(k.cost for k in todo if j.name in k.needs) for j in todo}
    record = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "gpus": gpus, "per_gpu": per_gpu,
              "device": _device(), "jobs": {}}  # fmt: skip
    running: dict[str, tuple[subprocess.Popen, str, float, Job]] = {}
    done: dict[str, int] = {}
    stopping = False

    def save():
        (store / "replication_v2.json").write_text(json.dumps(record, indent=1))

    while todo or running:
        now = time.time() - t0
        if not stopping and now > deadline:
            stopping = True
            print(f"[{now:6.0f}s] deadline: SIGINT to {len(running)} sweeps, {len(todo)} jobs not started",
                  flush=True)  # fmt: skip
            for proc, *_ in running.values():
                proc.send_signal(signal.SIGINT)
            for j in todo:
                record["jobs"][j.name] = {"status": "not started"}
            todo = []
        for name, (proc, gpu, start, _job) in list(running.items()):
            if proc.poll() is None:
                if stopping and time.time() - t0 > deadline + 45:
                    proc.kill()
                continue
            del running[name]
            done[name] = proc.returncode
            record["jobs"][name].update(exit=proc.returncode, wall_s=round(time.time() - start, 1))
            print(f"[{time.time() - t0:6.0f}s] {name} on {gpu}: exit {proc.returncode} after "
                  f"{time.time() - start:.0f} s", flush=True)  # fmt: skip
            save()
        if not stopping:
            load = {g: sum(j.slots for _, gg, _, j in running.values() if gg == g) for g in gpus}
            ready = [j for j in todo if all(n in done or n not in names for n in j.needs)]
            ready.sort(key=lambda j: -priority[j.name])
            for job in ready:
                gpu = min(gpus, key=lambda g: load[g])
                if load[gpu] + job.slots > per_gpu and load[gpu] > 0:
                    break
                todo.remove(job)
                if any(done.get(n, 0) != 0 for n in job.needs):
                    record["jobs"][job.name] = {"status": "skipped: a job it needs failed"}
                    continue
                try:
                    argv = command(job, store)
                except RuntimeError as exc:
                    record["jobs"][job.name] = {"status": f"skipped: {exc}"}
                    print(f"[{time.time() - t0:6.0f}s] {exc}", flush=True)
                    continue
                env = {
                    **os.environ,
                    "ASYMVIZ_NO_PROGRESS": "1",
                    "PYTHONUNBUFFERED": "1",
                    "OMP_NUM_THREADS": "2",
                }
                if gpu != "cpu":
                    env["CUDA_VISIBLE_DEVICES"] = gpu
                log = open(store / "logs" / f"{job.name}.log", "w")
                proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
                running[job.name] = (proc, gpu, time.time(), job)
                load[gpu] += job.slots
                record["jobs"][job.name] = {"command": " ".join(argv[1:]), "gpu": gpu,
                                            "started_s": round(time.time() - t0, 1)}  # fmt: skip
                print(f"[{time.time() - t0:6.0f}s] start {job.name} on {gpu}", flush=True)
            save()
        time.sleep(0.5)
    record["wall_s"] = round(time.time() - t0, 1)
    save()
    failed = [n for n, c in done.items() if c != 0]
    print(f"all done in {record['wall_s']} s; failed or stopped: {failed or 'none'}", flush=True)
    return 0


def _device() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}, torch {torch.__version__}"
        return f"cpu, torch {torch.__version__}"
    except Exception as exc:  # noqa: BLE001
        return f"unknown ({exc})"


def _longest_prefix(name: str, prefixes) -> str | None:
    """The longest of `prefixes` that starts `name` (so "vitmech" wins over "vit"), or None."""
    return max((p for p in prefixes if name.startswith(p)), key=len, default=None)


def experiment_of(store_name: str) -> str | None:
    """The cached_runs/ folder a job store's runs go to (EXPERIMENTS), by the longest matching prefix."""
    owner = {prefix: exp for exp, prefixes in EXPERIMENTS.items() for prefix in prefixes}
    prefix = _longest_prefix(store_name, owner)
    return owner[prefix] if prefix else None


def slim_all(store: Path) -> None:
    from bench.slim_store import slim

    for sub in sorted(p for p in store.iterdir() if p.is_dir() and p.name != "logs"):
        prefix = _longest_prefix(sub.name, KEEP)
        slim(
            sub,
            KEEP[prefix] if prefix else "seed < 0",
            "replication v2: only the weights the analyses use are shipped",
        )


def merge(store: Path, dest: Path) -> None:
    """Move every job store's runs into dest/<experiment>/, concatenating lr_selection.csv and sweep.json; the
    head_only control of minilm_rank is a copy of minilm_tasks' (the rank sweeps fix the head lr to its choice)."""
    import pandas as pd

    for exp in EXPERIMENTS:
        subs = [p for p in sorted(store.iterdir()) if p.is_dir() and experiment_of(p.name) == exp]
        if not subs:
            continue
        out = dest / exp
        out.mkdir(parents=True, exist_ok=True)
        selections, sweeps = [], []
        for sub in subs:
            for run in sub.iterdir():
                if (run / "run.json").exists():
                    if (out / run.name).exists():
                        shutil.rmtree(out / run.name)
                    shutil.copytree(run, out / run.name)
            if (sub / "lr_selection.csv").exists():
                selections.append(pd.read_csv(sub / "lr_selection.csv"))
            if (sub / "sweep.json").exists():
                sweeps += json.loads((sub / "sweep.json").read_text()).get("sweeps", [])
        if exp == "minilm_rank":
            for t in RANK_TASKS:
                for run in (store / f"tasks_{t}").iterdir():
                    data = json.loads((run / "run.json").read_text()) if (run / "run.json").exists() else {}
                    if data.get("config", {}).get("mode") == "head_only" and data.get("role") == "main":
                        shutil.copytree(run, out / run.name, dirs_exist_ok=True)
        if selections:
            pd.concat(selections).drop_duplicates().to_csv(out / "lr_selection.csv", index=False)
        (out / "sweep.json").write_text(json.dumps({"sweeps": sweeps}, indent=1))
        n = sum(1 for p in out.iterdir() if (p / "run.json").exists())
        record = store / "replication_v2.json"
        if record.exists():
            (out / "README.md").write_text(readme(exp, json.loads(record.read_text()), subs, n))
        print(f"{exp}: {n} runs")


TITLES = {
    "minilm_tasks": "Exp 1 · Table 1 again: MiniLM-L6 on five tasks, the head_only control, A&B (LoRA+ ratio "
    "searched), B only, A only, r = 8 and 16, 5 seeds",
    "minilm_rank": "Exp 2 · the d/r sweep: r = 1 ... 64 on fine_foods and word_pos, 5 seeds",
    "minilm_head": "Exp 3 · the head factorial, classifier-only arm (the pooler frozen); the other arm is "
    "minilm_tasks at r = 8",
    "minilm_mechanism": "Exp 4 · the mechanism test on MiniLM: LoRA on the top layer's value projection only",
    "similarity": "Exp 5 · similarity, the 2×2 design: same / other init × same / other task",
    "vit_mnist": "Exp 6 · the Fashion-MNIST ViT adapted to MNIST digits: control, A&B, B only, A only, 5 seeds",
    "vit_mechanism": "Exp 4 on the ViT: LoRA on the top layer's value projection only",
}
DESIGN = {
    "minilm_tasks": "Per task: the head_only control's head-lr grid first (its choice is the head lr of every mode "
    "of the task), then per mode and rank the lr (and for A&B the LoRA+ ratio lr_B / lr_A in {1, 4, 16}) on "
    "validation at seed 0, the grid extended while its best point sits at an end, then seeds 1-4 at the choice.",
    "minilm_rank": "Per task and rank: A&B (ratio 1, plain LoRA), B only, A only, each with its own lr chosen as in "
    "exp 1; the head lr is fixed to the one exp 1's control chose for the task (`--head-lr`), and the control's "
    "runs are copies of exp 1's. MiniLM's query and value are 384 × 384, so d/r = 384 / r.",
    "minilm_head": "As exp 1 at r = 8, but `--head classifier`: the pooler (dense + tanh on [CLS]) stays frozen at "
    "its pretrained values and only the classifier trains; its own head-lr grid. Compare with minilm_tasks r = 8.",
    "minilm_mechanism": "`--targets value --top-layers 1 --head classifier`: one adapted 384 × 384 module (layer 5's "
    "value projection), the classifier trained in every mode; adapters and inits kept for every counted run.",
    "similarity": "Mode ab, r = 8, plain LoRA, fixed lr 3e-3 (no grid: the design compares adapters, not "
    "accuracies), the head lr of exp 1's control per task; init seeds 0, 1, 2 (the draws of A and the head; B "
    "starts at zero) × seeds 0, 1 (batch order and the model's hidden and attention dropout; LoRA dropout is 0). A run whose seed equals its init seed has no "
    "`_i` in its name (init_seed null in run.json).",
    "vit_mnist": "The base model is models/vit-fmnist (README there; the runs' run.json name the GPU machine's copy "
    "of it, `.carry/vit-fmnist`); LoRA on query and value of its 4 layers, the "
    "10-way head re-drawn and trained in every mode, 5 epochs of batch 32 on 4,000 training digits; held-out = the "
    "same test digits rotated by 30°. Image runs do not pack: 12 runs in flight on one GPU.",
    "vit_mechanism": "As vit_mnist, but LoRA on the top layer's value projection only (96 × 96) and the classifier "
    "alone trained.",
}


def readme(exp: str, record: dict, subs: list[Path], n: int) -> str:
    """The experiment folder's README: what ran, the exact commands, the device and each job's wall time."""
    lines = [f"# {TITLES[exp]}", "", DESIGN[exp], "",
             f"{n} runs. Trained by `python bench/replication_v2.py run STORE --gpus 0,1 --per-gpu 4` on "
             f"{record.get('device')} (started {record.get('started')}; the whole replication, every experiment, "
             f"{record.get('wall_s')} s wall with {record.get('per_gpu')} sweeps at a time per GPU); then `slim`, "
             "`merge` and `ship` (see that script's docstring for what was dropped to ship: weights outside the "
             "kept runs, thinned training-loss rows of lr-grid runs, duplicate split.json; each run's run.json "
             "says so under `weights_dropped` / `shipped`). The jobs, each one `asymviz sweep` (STORE = the GPU "
             "machine's store; the head lr of a `--head-lr` job is what its head_only control chose):", ""]  # fmt: skip
    names = {s.name for s in subs}
    for name, job in sorted(record.get("jobs", {}).items()):
        cmd = job.get("command", "")
        if not any(f"/{sub} " in cmd or cmd.endswith(f"/{sub}") for sub in names):
            continue
        cmd = _readable(cmd.replace("-m asymviz", "asymviz").split(" --store ")[0])
        wall = job.get("wall_s")
        lines += [f"- `{name}` (GPU {job.get('gpu')}, {wall} s wall, exit {job.get('exit')}):", "",
                  f"      {cmd}", ""]  # fmt: skip
    return "\n".join(lines) + "\n"


def _readable(cmd: str) -> str:
    """A sweep command as a reader should type it: a flag given twice keeps its last value (argparse's rule, so
    the runs are the same), and the GPU machine's copy of the ViT is named by its folder in cached_runs/."""
    words = cmd.split()
    flags: dict[str, int] = {}
    for i, w in enumerate(words):
        if w.startswith("--") and i + 1 < len(words) and not words[i + 1].startswith("--"):
            flags[w] = i  # the last occurrence wins
    out, i = [], 0
    while i < len(words):
        w = words[i]
        if w in flags and flags[w] != i:
            i += 2  # an earlier value of a flag given again later
            continue
        out.append(w)
        i += 1
    text = " ".join(out)
    for local in ("/work/main/.carry/vit-fmnist", ".carry/vit-fmnist"):
        text = text.replace(local, "cached_runs/models/vit-fmnist")
    return text


def ship(dest: Path, every: int = 10) -> None:
    """Thin the merged folders to ship them (each step recorded in the run's run.json as `shipped`):
    - lr-grid runs keep every `every`-th training-loss row of metrics.csv (and every evaluation row): their
      curves only choose an lr; counted runs of more than 400 steps every 4th, shorter ones every step;
    - split.json (the rows of each split) is identical in every run of a task (one split seed; checked here by
      content): kept in the first run of each task and experiment, dropped from the others;
    - init/ of the 2x2's runs on tasks other than fine_foods (the 2x2 compares trained adapters), of its
      fine_foods seed-1 runs (their init is the seed-0 run's of the same init seed, checked bit for bit), and of
      minilm_tasks' b_only runs (the frozen A is adapter/'s A; B starts at zero) are dropped."""
    import hashlib

    import pandas as pd

    from asymviz.runs import annotate_run

    for exp in sorted(p for p in dest.iterdir() if p.is_dir() and p.name in EXPERIMENTS):
        first_split: dict[str, str] = {}
        for run in sorted(p for p in exp.iterdir() if (p / "run.json").exists()):
            data = json.loads((run / "run.json").read_text())
            cfg, notes = data.get("config", {}), []
            metrics = run / "metrics.csv"
            steps = int(data.get("progress", {}).get("total_steps") or 0)
            thin = every if data.get("role") == "lr_grid" else 4 if steps > 400 else 1
            if thin > 1 and metrics.exists():
                m = pd.read_csv(metrics)
                train = (m["split"] == "train") & (m["metric"] == "loss")
                keep = ~train | (m["step"] % thin == 0) | (m["step"] == m.loc[train, "step"].max())
                if (~keep).any():
                    m[keep].to_csv(metrics, index=False)
                    notes.append(f"metrics.csv: every {thin}th training-loss step")
            split = run / "split.json"
            if split.exists():
                digest = hashlib.sha256(split.read_bytes()).hexdigest()
                task = cfg.get("task")
                if task not in first_split:
                    first_split[task] = digest
                elif first_split[task] == digest:
                    split.unlink()
                    notes.append("split.json: the same as every run of the task (kept in one)")
            init = run / "init"
            if init.exists() and exp.name == "similarity" and cfg.get("task") != "fine_foods":
                shutil.rmtree(init)  # the 2x2 compares trained adapters; fine_foods keeps its inits for drift
                notes.append("init/: dropped to ship (fine_foods' runs keep theirs)")
            elif init.exists() and exp.name == "similarity" and cfg.get("seed") == 1:
                twin = [p for p in exp.iterdir() if (p / "run.json").exists() and p != run
                        and _same_init(json.loads((p / "run.json").read_text()).get("config", {}), cfg)]  # fmt: skip
                if twin and (twin[0] / "init").exists() and _same_files(init, twin[0] / "init"):
                    shutil.rmtree(init)
                    notes.append(f"init/: identical to {twin[0].name}'s")
            elif init.exists() and exp.name == "minilm_tasks" and cfg.get("mode") == "b_only":
                shutil.rmtree(init)
                notes.append("init/: the frozen A is adapter/'s A and B starts at zero")
            if notes:
                annotate_run(run, shipped=notes)


def _same_init(a: dict, b: dict) -> bool:
    """Two configs whose init draws are the same: same task, mode, rank, init seed (seed if unset), another seed."""
    init = lambda c: c.get("init_seed") if c.get("init_seed") is not None else c.get("seed")  # noqa: E731
    keys = ("task", "mode", "rank", "model", "targets", "head", "alpha")
    return all(a.get(k) == b.get(k) for k in keys) and init(a) == init(b) and a.get("seed") != b.get("seed")


def _same_files(x: Path, y: Path) -> bool:
    files = sorted(p.name for p in x.iterdir())
    return files == sorted(p.name for p in y.iterdir()) and all(
        (x / f).read_bytes() == (y / f).read_bytes() for f in files
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("plan")
    r = sub.add_parser("run")
    r.add_argument("store", type=Path)
    r.add_argument("--gpus", default="0")
    r.add_argument("--per-gpu", type=int, default=4)
    r.add_argument(
        "--deadline", type=float, default=1e9, help="seconds after which running sweeps are stopped"
    )
    r.add_argument("--cpu-check", action="store_true")
    r.add_argument("--only", help="comma-separated job names")
    s = sub.add_parser("slim")
    s.add_argument("store", type=Path)
    sh = sub.add_parser("ship")
    sh.add_argument("dest", type=Path)
    m = sub.add_parser("merge")
    m.add_argument("store", type=Path)
    m.add_argument("dest", type=Path)
    a = p.parse_args(argv)
    if a.cmd == "plan":
        for j in jobs("cached_runs/models/vit-fmnist"):
            head = f" --head-lr <{j.head_lr_from}'s head_only choice>" if j.head_lr_from else ""
            print(f"{j.name}: asymviz sweep {' '.join(j.args)}{head} --store STORE/{j.store}")
        return 0
    if a.cmd == "run":
        gpus = ["cpu"] if a.cpu_check else a.gpus.split(",")
        only = set(a.only.split(",")) if a.only else None
        return run(a.store, gpus, a.per_gpu, a.deadline, a.cpu_check, only)
    if a.cmd == "slim":
        slim_all(a.store)
        return 0
    if a.cmd == "ship":
        ship(a.dest)
        return 0
    merge(a.store, a.dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
