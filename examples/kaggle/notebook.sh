#!/usr/bin/env bash
# dfpanel on Kaggle: one training stage of one specialist, one notebook session at a time.
# The notebook's third cell (start it with %%bash); docs/kaggle.md shows it with the install and
# settings cells, and tests/test_kaggle.py runs it on synthetic data.
set -euo pipefail

# ---- settings: set them in the settings cell (%env NAME=value), or change the defaults here ----
SPECIALIST=${SPECIALIST:-cm}         # bg, av, cm, rr or tm
STAGE=${STAGE:-ffpp}                 # ffpp, then celebdf, then dfdc: one notebook per stage
SESSION_LIMIT=${SESSION_LIMIT:-8h30m}  # this cell's time; leave the rest of the session to save the output
PREV=${PREV:-}                       # this notebook's previous output, e.g. /kaggle/input/dfpanel-cm-ffpp
INIT=${INIT:-}                       # celebdf, dfdc: the previous stage's weights (a file under /kaggle/input, or a URL)
INIT_SHA256=${INIT_SHA256:-}         # their sha256 (read from the .sha256 file beside a local INIT when empty)
PRESET=${PRESET:-full}               # full (GPU presets) or tiny (a CPU trial run)
FRAMES=${FRAMES:-32}                 # frames extracted per video
DEVICE=${DEVICE:-cuda}               # face detector device for extraction
EXTRACT_WORKERS=${EXTRACT_WORKERS:-4}
DFDC_CHUNKS=${DFDC_CHUNKS:-10}       # DFDC parts are grouped into this many chunks, trained one after another
MAX_CACHE_GB=${MAX_CACHE_GB:-10}     # dfdc: a chunk's extracted faces stay under this (of ~20 GB in /kaggle/working)
TRAIN_ARGS=${TRAIN_ARGS:---set data.num_workers=4}  # more curriculum options (a Kaggle GPU session has 4 CPUs)
TRAIN_LIMIT=${TRAIN_LIMIT:-}         # training's time limit; empty: what is left of SESSION_LIMIT

INPUT=${KAGGLE_INPUT:-/kaggle/input}      # read-only dataset mounts
WORK=${KAGGLE_WORKING:-/kaggle/working}   # writable, ~20 GB, saved as this notebook's output
SCRATCH=${SCRATCH:-/tmp/dfpanel}          # writable, not saved
DFPANEL=${DFPANEL:-dfpanel}
# Dataset mounts: examples; change them to the names your datasets have under /kaggle/input.
FFPP=${FFPP:-$INPUT/faceforensics-c23}      # original_sequences/ manipulated_sequences/ splits/ (c23 videos)
CELEBDF=${CELEBDF:-$INPUT/celeb-df-v2}      # Celeb-real/ Celeb-synthesis/ YouTube-real/ List_of_testing_videos.txt
DFDC_PARTS=${DFDC_PARTS:-$INPUT/dfdc*/dfdc_train_part_*}  # the DFDC parts you attached, one or several datasets

# ---- the session ---------------------------------------------------------------------------
LIMIT_S=$(python -c 'import sys; from dfpanel.train.limits import parse_duration; print(int(parse_duration(sys.argv[1])))' "$SESSION_LIMIT")
left() {  # seconds this cell has left; fails when none are left
  local s=$(( LIMIT_S - SECONDS ))
  [ "$s" -gt 0 ] || { echo "session limit reached: save this version, then run again with PREV=<its output>" >&2; return 1; }
  echo "$s"
}
mkdir -p "$WORK" "$SCRATCH/manifests"

# 1. Index this stage's dataset (seconds; done again every session).
case "$STAGE" in
  ffpp)    $DFPANEL index "$FFPP" --dataset ffpp --compression c23 --out "$SCRATCH/manifests/ffpp.jsonl" ;;
  celebdf) $DFPANEL index "$CELEBDF" --dataset celebdf --out "$SCRATCH/manifests/celebdf.jsonl" ;;
  dfdc)    # gather the attached parts into one folder, as `dfpanel index` wants them
           rm -rf "$SCRATCH/dfdc" && mkdir -p "$SCRATCH/dfdc"
           for part in $DFDC_PARTS; do
             [ -d "$part" ] || { echo "no DFDC part folders match $DFDC_PARTS" >&2; exit 2; }
             ln -s "$part" "$SCRATCH/dfdc/$(basename "$part")"
             # a dry run on `dfpanel synth --layout dfdc` data keeps its record of being synthetic
             if [ -f "$(dirname "$part")/dfpanel_synth.json" ]; then ln -sf "$(dirname "$part")/dfpanel_synth.json" "$SCRATCH/dfdc/"; fi
           done
           $DFPANEL index "$SCRATCH/dfdc" --dataset dfdc --dfdc-chunks "$DFDC_CHUNKS" --out "$SCRATCH/manifests/dfdc.jsonl" ;;
  *)       echo "STAGE must be ffpp, celebdf or dfdc" >&2; exit 2 ;;
esac

# 2. Extract faces (FF++, Celeb-DF) into the working folder, going on from the previous session's
#    cache. DFDC is too big for the disk: the curriculum extracts it chunk by chunk (--max-cache-gb).
ARGS=()
if [ "$STAGE" != dfdc ]; then
  if [ -n "$PREV" ] && [ -d "$PREV/cache" ] && [ ! -d "$WORK/cache" ]; then cp -r "$PREV/cache" "$WORK/cache"; chmod -R u+w "$WORK/cache"; fi
  t=$(left) || exit 0; code=0
  timeout --kill-after=5m "${t}s" $DFPANEL extract "$SCRATCH/manifests/$STAGE.jsonl" --out "$WORK/cache" \
    --frames "$FRAMES" --device "$DEVICE" --workers "$EXTRACT_WORKERS" --no-progress || code=$?
  if [ "$code" -eq 124 ]; then
    echo "extraction stopped at the session limit; save this version, then run again with PREV=<its output>"; exit 0
  fi
  [ "$code" -eq 0 ] || exit "$code"
  ARGS+=(--data "$WORK/cache")
else
  ARGS+=(--max-cache-gb "$MAX_CACHE_GB" --extract-device "$DEVICE" --extract-workers "$EXTRACT_WORKERS")
fi

# 3. Train, stopping cleanly before the session ends. --resume-from copies the previous session's
#    run (checkpoints, run state, finished chunks) from the read-only input and goes on from there.
if [ -n "$PREV" ] && [ -d "$PREV/runs/$SPECIALIST/$STAGE" ]; then ARGS+=(--resume-from "$PREV/runs"); fi
if [ -n "$INIT" ]; then
  if [ -z "$INIT_SHA256" ] && [ -f "${INIT%.safetensors}.sha256" ]; then INIT_SHA256=$(cat "${INIT%.safetensors}.sha256"); fi
  ARGS+=(--init-from "$INIT" --init-sha256 "$INIT_SHA256")
fi
t=$(left) || exit 0; code=0
$DFPANEL curriculum --specialist "$SPECIALIST" --stages "$STAGE" --preset "$PRESET" \
  --manifests "$SCRATCH/manifests" --out "$WORK/runs" --time-limit "${TRAIN_LIMIT:-${t}s}" --quiet "${ARGS[@]}" $TRAIN_ARGS || code=$?
if [ "$code" -eq 75 ]; then
  echo "stopped for the time limit, not finished: save this version, then run again with PREV=<its output>"; exit 0
fi
[ "$code" -eq 0 ] || exit "$code"

# 4. Finished: publish the stage's weights for the next stage's notebook (and drop the cache, so the
#    output, which becomes that notebook's input, stays small).
mkdir -p "$WORK/weights"
cp "$WORK/runs/$SPECIALIST/$STAGE/best.safetensors" "$WORK/weights/${SPECIALIST}_$STAGE.safetensors"
cp "$WORK/runs/$SPECIALIST/$STAGE/best.json" "$WORK/weights/${SPECIALIST}_$STAGE.json"
sha256sum "$WORK/weights/${SPECIALIST}_$STAGE.safetensors" | cut -d' ' -f1 > "$WORK/weights/${SPECIALIST}_$STAGE.sha256"
rm -rf "$WORK/cache"
echo "stage $STAGE finished: $WORK/weights/${SPECIALIST}_$STAGE.safetensors (sha256 $(cat "$WORK/weights/${SPECIALIST}_$STAGE.sha256"))"
