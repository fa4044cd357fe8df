#!/usr/bin/env bash
# The shipped experiments that need a GPU (issue 6), on one H200, resumable:
#   exp 2  similarity of learned A and B (the paper's Figure 1): fine_foods, A&B r=8, 5 seeds with their own
#          inits, 5 seeds sharing seed 0's init, and 4 tasks sharing one init           -> STORE/similarity
#   exp 5  init study (the paper's Table 2): B only with orthogonal, gaussian and kaiming frozen A on
#          fine_foods and word_polarity, 3 seeds, lr chosen per init on validation      -> STORE/glue
#   exp 4  ViT / DomainBed stand-in: a small ViT pretrained here on Fashion-MNIST (asymviz pretrain-vit, 30
#          epochs) -> STORE/models/vit-fmnist, then LoRA (query, value, r=8) on the mnist digits, 3 modes x
#          3 seeds, 5 epochs, lr chosen per mode on validation; held-out = rotated test digits -> STORE/vit
#   exp 1  Table 1: MiniLM on 5 tasks x 3 modes x r=8,16 x 3 seeds, LoRA on query and value, full training
#          sets, 3 epochs of batch 32, lr chosen per task and mode on validation
#          (grid 5e-4 ... 4.05e-2 in steps of 3x, seed 0, r=8)                               -> STORE/glue
#
#   bash bench/gpu_experiments.sh STORE [SECONDS]     # stop (Ctrl-C, runs resumable) after SECONDS
#
# On the device machine (MiniLM travels as an fp16 copy: `python bench/make_minilm_fp16.py`, carry .carry):
#   ASYMVIZ_MINILM=.carry/minilm-fp16 bash bench/gpu_experiments.sh .gpu_store 540
# Run it again with the same STORE and it goes on where it stopped (completed runs are skipped).
# Environment: GPUS (default 0), JOBS runs in flight per GPU (default 12), EXTRA extra flags for every sweep
# (a CPU check of the script: GPUS=cpu JOBS=2 EXTRA="--max-train 48 --max-validation 16 --max-test 16 --epochs 0.5").
set -u
STORE=${1:-.gpu_store}
SECONDS_LEFT_AT=$(( $(date +%s) + ${2:-86400} ))
GPUS=${GPUS:-0}
JOBS=${JOBS:-12}
EXTRA=${EXTRA:-}
PY=${PYTHON:-python3}
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$(pwd)" ASYMVIZ_NO_PROGRESS=1 PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
if [[ $GPUS == cpu ]]; then WHERE="--cpu-jobs $JOBS"; else WHERE="--gpus $GPUS --jobs-per-gpu $JOBS"; fi
COMMON="--model minilm --targets query,value --epochs 3 --batch-size 32 --max-length 128 --save-dtype fp16
        $WHERE --quiet --format csv"
LRS=${LRS:-5e-4,1.5e-3,4.5e-3,1.35e-2,4.05e-2}
TASKS=${TASKS:-fine_foods,tweet_source,word_polarity,word_pos,chatterbot_topic}

sweep() {  # NAME STORE-SUBFOLDER FLAGS...: one `asymviz sweep`, stopped with SIGINT at the deadline
  local name=$1 sub=$2; shift 2
  local left=$(( SECONDS_LEFT_AT - $(date +%s) ))
  if (( left < 20 )); then echo "== $name: no time left, skipped"; return; fi
  echo "== $name ($(date -u +%T), ${left} s left): asymviz sweep $* --store $STORE/$sub --name $name"
  # shellcheck disable=SC2086
  timeout --signal=INT --kill-after=60 "$left" $PY -m asymviz sweep $COMMON $EXTRA "$@" --store "$STORE/$sub" \
    --name "$name" -o "$STORE/$sub/$name.csv"
  echo "== $name: exit $? at $(date -u +%T)"
}

$PY -c "import torch; print('torch', torch.__version__, torch.cuda.device_count(), 'x',
        torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')"
sweep exp2_own_init similarity --tasks fine_foods --modes ab --rank 8 --seeds 0,1,2,3,4 --lr 1.5e-3
sweep exp2_shared_init similarity --tasks fine_foods --modes ab --rank 8 --seeds 0,1,2,3,4 --shared-init 0 --lr 1.5e-3
sweep exp2_tasks similarity --tasks fine_foods,tweet_source,word_polarity,chatterbot_topic --modes ab --rank 8 \
  --seeds 0 --lr 1.5e-3
VIT=$STORE/models/vit-fmnist
if [[ ! -f $VIT/pretraining.json ]]; then
  echo "== pretrain-vit ($(date -u +%T))"
  # shellcheck disable=SC2086
  $PY -m asymviz pretrain-vit --out "$VIT" --epochs ${VIT_EPOCHS:-30} --quiet || echo "== pretrain-vit failed"
fi
if [[ -f $VIT/pretraining.json ]]; then
  sweep exp4 vit --model "$VIT" --tasks mnist --modes ab,b_only,a_only --ranks 8 --seeds 0,1,2 --epochs 5 --lrs $LRS
fi
sweep exp5 glue --tasks fine_foods,word_polarity --modes b_only --a-inits orthogonal,gaussian,kaiming --ranks 8 \
  --seeds 0,1,2 --lrs $LRS
sweep exp1 glue --tasks $TASKS --modes ab,b_only,a_only --ranks 8,16 --seeds 0,1,2 --lrs $LRS
$PY -m asymviz runs list --store "$STORE/glue" --format csv -o "$STORE/glue/runs.csv" || true
