"""What `asymviz sweep` says before it starts: how many runs, how many training examples, roughly how long."""

from __future__ import annotations

# Measured examples/s of MiniLM (bench/results/): 2-core CPU, batch 16 x 64 tokens, one run at a time (the
# cores are split between side-by-side runs, so the sum stays about the same); one H200, batch 32 x 128: one
# run, and a sweep of 12 runs in flight (summed). Other models: the store's own completed runs, else unknown.
REFERENCE_RATES = {("minilm", "cpu"): 38.0, ("minilm", "gpu"): 1442.0, ("minilm", "gpu_shared"): 3248.0}


def sweep_outline(
    configs, store, lrs=None, devices=None, jobs_per_gpu: int = 1, ratios=None
) -> tuple[int, str]:
    """How many runs a sweep will train and roughly how long, before it starts.

    Returns
    -------
    (runs, line) : the number of runs to train (with an lr grid: the pending grid runs plus, at most, every
        main run) and one line for stderr: runs, examples and an estimated time with the rate it rests on.
    """
    from asymviz.runs import RunStore
    from asymviz.training.plan import Plan, estimated_steps, pending

    store = store if isinstance(store, RunStore) else RunStore(store)
    sizes: dict = {}
    todo = pending(configs, store) if store.root.is_dir() else list(configs)
    grid = []
    if lrs:
        grid_configs = Plan(configs, store, lrs, {}, ratios=ratios).initial_grid()
        grid = pending(grid_configs, store) if store.root.is_dir() else grid_configs
    runs = len(grid) + len(todo)
    reused = len({c.run_id() for c in configs}) - len(todo)
    examples = sum(estimated_steps(c, sizes) * c.batch_size for c in [*grid, *todo])
    rate, basis = _sweep_rate(configs, store, devices, jobs_per_gpu)
    where = "CPU" if devices is None else f"{len(devices)} GPU(s) x {jobs_per_gpu} in flight"
    upto = "up to " if lrs else ""
    line = f"sweep: {upto}{runs} runs to train on {where}"
    line += f" ({len(grid)} lr-grid runs first, more if a grid extends)" if lrs else ""
    line += f", {reused} already in the store" if reused else ""
    line += f", about {examples:,} training examples"
    if rate:
        line += f": roughly {_duration(examples / rate)} ({basis})"
    else:
        line += f" (no measured speed for {basis}: the first run will tell)"
    return runs, line


def _sweep_rate(configs, store, devices, jobs_per_gpu: int) -> tuple[float | None, str]:
    """Examples/s to expect (summed over runs in flight) and where the figure comes from."""
    import pandas as pd

    models = sorted({c.model for c in configs})
    kind = "cpu" if devices is None else "gpu"
    try:
        done = store.list()
    except Exception:  # an unreadable store: no history, the reference rates still apply
        done = pd.DataFrame()
    if not done.empty and {"model", "device", "examples_per_s"} <= set(done.columns):
        same = done[(done["status"] == "completed") & done["model"].isin(models)]
        same = same[same["device"].fillna("").str.startswith("cuda") == (kind == "gpu")]
        if same["examples_per_s"].notna().sum() >= 3:
            rate = float(same["examples_per_s"].median())
            n = len(devices) if devices else 1  # one run per GPU's worth: runs side by side only go faster
            return rate * n, f"median {rate:.0f} examples/s per run of {len(same)} such runs in this store"
    if models == ["minilm"]:
        if kind == "cpu":
            return REFERENCE_RATES[("minilm", "cpu")], "MiniLM on a 2-core CPU: about 38 examples/s"
        shared = jobs_per_gpu > 1
        per_gpu = REFERENCE_RATES[("minilm", "gpu_shared" if shared else "gpu")]
        return per_gpu * len(devices), f"MiniLM on one H200: about {per_gpu:.0f} examples/s per GPU"
    return None, ", ".join(models) + f" on {kind.upper()}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds / 10) * 10):.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
