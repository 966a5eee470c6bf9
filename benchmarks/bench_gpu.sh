#!/usr/bin/env bash
# The figures and checks that need a CUDA GPU (issue 6), in one go, each stage under its own time limit:
#
#     bash benchmarks/bench_gpu.sh LOGDIR [STAGE ...]     # stages: env image text ddp vary precision tests
#
# Each stage writes LOGDIR/STAGE.log (the benchmarks' JSON lines among it). vaekit runs from src/ when it is
# not installed; the shared data come from VAEKIT_SHARED_DATA (default ../shared/data).
set -uo pipefail
cd "$(dirname "$0")/.."
LOG=${1:?usage: bench_gpu.sh LOGDIR [STAGE ...]}; shift
STAGES=${*:-env image text ddp vary precision tests}
mkdir -p "$LOG"
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export VAEKIT_SHARED_DATA=${VAEKIT_SHARED_DATA:-$(cd .. && pwd)/shared/data}
PY=${PYTHON:-python3}
WORK=$(mktemp -d)
TORCHRUN="$PY -m torch.distributed.run --standalone --nproc-per-node 2"

stage() {  # stage NAME SECONDS COMMAND...: runs COMMAND, its output into LOGDIR/NAME.log, and says how it ended
  local name=$1 limit=$2; shift 2
  local start=$SECONDS
  timeout "$limit" bash -c "$*" >>"$LOG/$name.log" 2>&1
  echo "[$name] rc=$? after $((SECONDS - start)) s: $*" | tee -a "$LOG/$name.log" >>"$LOG/summary.txt"
}

for s in $STAGES; do case $s in
  env)
    stage env 60 "nvidia-smi; $PY -c 'import torch, vaekit; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(), \"bf16\", torch.cuda.is_bf16_supported(), \"cpu threads\", torch.get_num_threads())'" ;;
  image)  # whole `vaekit train image --preset seed` commands on the GPU: fp32, bf16, fp16
    stage image 300 "$PY benchmarks/bench_speed.py image --image-epochs 5" ;;
  text)  # PTB tokens/s, one epoch or a minute per configuration
    stage text 420 "$PY benchmarks/bench_speed.py text --text-minutes 1 --precision bf16 && $PY benchmarks/bench_speed.py text --text-minutes 1 --precision fp32 --text-configs sentence_vae" ;;
  ddp)  # vaekit's DDP path on CUDA tensors; NCCL wants one GPU per process, so with one GPU also through gloo
    gpus=$($PY -c 'import torch; print(torch.cuda.device_count())')
    stage ddp 180 "$TORCHRUN benchmarks/ddp_check.py $WORK/ddp-nccl --backend nccl"
    stage ddp 180 "$TORCHRUN benchmarks/ddp_check.py $WORK/ddp-gloo --backend gloo"
    stage ddp 120 "$TORCHRUN -m vaekit train image --data $VAEKIT_SHARED_DATA/mnist --out $WORK/ddp-cli --preset seed --epochs 1 --quiet; echo exit \$?"
    [ "$gpus" -ge 2 ] && stage ddp 180 "$TORCHRUN -m vaekit train image --data $VAEKIT_SHARED_DATA/mnist --out $WORK/ddp-cli2 --preset seed --epochs 2 --quiet && $TORCHRUN -m vaekit train image --out $WORK/ddp-cli2 --resume --epochs 3 --quiet" ;;
  vary)  # a headline model trained on the GPU for VARY_MINUTES (default 2), then vary's latency on the CPU (where
        # the vary command runs) and with the model on the GPU (vaekit.load(run, map_location="cuda"))
    stage vary 400 "$PY -c \"import gzip, sys; d = sys.argv[1]; print('\\n'.join(' '.join(l.split()) for n in ('clickbait_data.gz', 'non_clickbait_data.gz') for l in gzip.open(d + '/' + n, 'rt') if l.strip()))\" $VAEKIT_SHARED_DATA/clickbait-headlines > $WORK/headlines.txt && $PY -m vaekit train text --data $WORK/headlines.txt --out $WORK/headlines --max-tokens 40 --vocab-size 20000 --max-minutes ${VARY_MINUTES:-2} --quiet && $PY benchmarks/bench_speed.py vary --run $WORK/headlines && $PY benchmarks/bench_speed.py vary --run $WORK/headlines --vary-device cuda" ;;
  precision)  # bf16 against fp32 test NLL on MNIST and PTB, trained on the GPU
    stage precision 540 "$PY benchmarks/bench_speed.py precision --ptb-epochs 2" ;;
  tests)  # the suite, with device auto meaning this GPU
    stage tests 900 "$PY -m pytest -v -rfE -p no:cacheprovider ${PYTEST_ARGS:-}" ;;
  *) echo "unknown stage $s" >&2; exit 2 ;;
esac; done
rm -rf "$WORK"
cat "$LOG/summary.txt"
