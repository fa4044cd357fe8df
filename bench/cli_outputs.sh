#!/usr/bin/env bash
# The CLI's outputs on the shipped runs and on a PEFT adapter, one file per command, to compare two checkouts
# byte for byte (the layout step must not change a number):
#   bash bench/cli_outputs.sh /tmp/after            # from this checkout
#   (cd OTHER_CHECKOUT && PYTHONPATH=$PWD bash /path/to/bench/cli_outputs.sh /tmp/before)
#   diff -r /tmp/before /tmp/after && echo identical
set -u
out=${1:?usage: cli_outputs.sh OUTDIR}
mkdir -p "$out"
export ASYMVIZ_NO_PROGRESS=1 PYTHONWARNINGS=ignore
runs=cached_runs/minilm_tasks
# shipped runs that keep their adapter (the v2 runs of 2026-11-30; outputs of checkouts with other runs differ)
a1=$runs/fine_foods_minilm_b_only_r8_s0_4c70f642
a2=cached_runs/similarity/fine_foods_minilm_ab_r8_s1_ac33a4e5
a3=cached_runs/similarity/fine_foods_minilm_ab_r8_s0_i1_7bf2020d
cmd() { name=$1; shift; python -m asymviz "$@" >"$out/$name.out" 2>"$out/$name.err"; echo "exit $?" >>"$out/$name.err"; }
cmd spectra_csv spectra "$a1/adapter" --format csv
cmd spectra_json spectra "$a2/adapter" --which delta --format json
cmd spectra_table spectra "$a1/adapter" --which B
cmd similarity_csv similarity "$a2/adapter" "$a3/adapter" --format csv
cmd similarity_delta similarity "$a2/adapter" "$a3/adapter" --which delta --k 4 --format json
cmd runs_list runs list --store cached_runs/minilm_tasks --format csv
cmd diagnose diagnose "$a1/adapter" --base minilm --format csv
cmd bad_file spectra README.md
cmd missing spectra no/such/adapter
