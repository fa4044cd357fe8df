"""bench/perf_table.py: the README's performance table is what the benchmarks' JSON says."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
import perf_table  # noqa: E402
from results_io import Figure, Row, write_results  # noqa: E402


def test_a_bench_file_becomes_rows_with_median_min_max_and_the_verdict(tmp_path):
    rows = [
        Row("fast thing", "s", Figure([0.5, 0.4, 0.7]), Figure([1.0, 0.9, 1.2]), target=0.6),
        Row("slow thing", "s", Figure([2.0, 2.5, 3.0]), target=1.0, note="how"),
    ]
    write_results("demo", "python bench/demo.py", rows, load_start=1.5, folder=tmp_path)
    data = json.loads((tmp_path / "demo.json").read_text())
    assert data["rows"][0]["new"] == {"median": 0.5, "min": 0.4, "max": 0.7, "runs": [0.5, 0.4, 0.7]}
    assert data["rows"][0]["old_over_new"] == pytest.approx(2.0)
    assert data["rows"][0]["met"] is True and data["rows"][1]["met"] is False
    table = perf_table.table(tmp_path).splitlines()
    assert len(table) == 4  # header, separator, two rows
    assert (
        "0.50 s [0.40 s–0.70 s] (3 runs)" in table[2]
        and "old/new ×2.00" in table[2]
        and "| yes |" in table[2]
    )
    assert "slow thing (how)" in table[3] and "**no**" in table[3] and "≤ 1.00 s" in table[3]


def test_rewrite_replaces_only_the_text_between_the_markers():
    readme = f"intro\n{perf_table.BEGIN}\nold table\n{perf_table.END}\nrest\n"
    assert (
        perf_table.rewrite(readme, "| new |")
        == f"intro\n{perf_table.BEGIN}\n| new |\n{perf_table.END}\nrest\n"
    )
    with pytest.raises(ValueError, match="markers"):
        perf_table.rewrite("no markers here", "| new |")


def test_the_readme_table_is_up_to_date_with_bench_results():
    out = subprocess.run([sys.executable, str(REPO / "bench" / "perf_table.py"), "--check"],
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stderr
