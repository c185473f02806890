#!/usr/bin/env bash
# Replayable runs (issue 38): a run that recorded its services runs again
# with `tandem run --replay`, answered from the recording with no model,
# and its tasks compute the same numbers bit for bit; inputs the recording
# never saw are an error saying where they differ.
# Usage: test_replay.sh SOURCE_DIR BUILD_DIR MPIEXEC
set -uo pipefail
src=$1
build=$2
mpiexec=$3
source "$(dirname "$0")/../support/shell_test.sh"
work=$(mktemp -d "$build/replay-test-XXXXXX")
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
tandem="$build/launcher/tandem"

# A copy of an example's workflow that records its service: paths made
# absolute, `record = true` added after the service's backend line.
recording_copy() {  # EXAMPLE OUT
  python3 - "$src/examples/$1" "$2" <<'PY'
import re, sys
example, out = sys.argv[1], sys.argv[2]
text = open(f"{example}/workflow.toml").read()
text = text.replace('backend = "torchscript"', 'backend = "torchscript"\nrecord = true', 1)
text = re.sub(r'model = "([^"]+)"', lambda m: f'model = "{example}/{m.group(1)}"', text)
for script in ("report.py", "closure.py", "compare.py"):
    text = text.replace(f'"{script}"', f'"{example}/{script}"')
open(out, "w").write(text)
PY
}

run() {  # NAME WORKFLOW [ARGS...]: runs it on 4 ranks, output in $work/NAME.log
  local name=$1 wf=$2
  shift 2
  timeout 300 "$mpiexec" "${mpiexec_flags[@]}" -n 4 "$tandem" run "$wf" --run-dir "$work/$name" \
    --log-level warn "$@" > "$work/$name.log" 2>&1
}

# The members' fields, without their timings, as text: equal text is equal bits.
fields() {  # RUN_DIR TASK
  python3 - "$1/tasks/$2" <<'PY'
import glob, json, sys
for f in sorted(glob.glob(sys.argv[1] + "/member-*.json")):
    j = json.load(open(f))
    print(f.rsplit("/", 1)[1], json.dumps(j["u"]), j["a"])
PY
}

# 1. surrogate-ensemble, recorded, then replayed.
export SURROGATE_ENSEMBLE_BUILD="$build/examples/surrogate-ensemble"
recording_copy surrogate-ensemble "$work/surrogate.toml"
run recorded "$work/surrogate.toml"
check "the recording run exits 0" test $? -eq 0
check "it recorded its requests" test -s "$work/recorded/services/closure/replica-0.h5"
run replayed "$work/surrogate.toml" --replay "$work/recorded"
check "the replay run exits 0" test $? -eq 0
fields "$work/recorded" surrogate > "$work/recorded.u"
fields "$work/replayed" surrogate > "$work/replayed.u"
check "six members' fields came out" test "$(wc -l < "$work/replayed.u")" -eq 6
check "the replayed members' fields are bit for bit the recorded ones" \
  cmp -s "$work/recorded.u" "$work/replayed.u"
check "the replay loaded no model and says what it replayed" python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
s = json.load(open(f"{work}/replayed/summary.json"))
c = s["services"]["closure"]
assert s["replay_of"] == f"{work}/recorded", s.get("replay_of")
assert c["backend"] == "replay" and c["models"] == [], c
assert c["replay_of"] == f"{work}/recorded/services/closure", c
assert c["requests"] == 1800 and c["errors"] == 0, c
rec = json.load(open(f"{work}/recorded/summary.json"))["services"]["closure"]
assert rec["backend"] == "torchscript" and len(rec["models"]) == 1, rec
PY
check "provenance: the recorded run names the model file and its SHA-256" python3 - "$work" "$src" <<'PY'
import hashlib, json, sys
work, src = sys.argv[1], sys.argv[2]
model = f"{src}/examples/surrogate-ensemble/closure_mlp.pt"
m = json.load(open(f"{work}/recorded/summary.json"))["services"]["closure"]["models"][0]
assert m["path"] == model and m["version"] == 1, m
assert m["sha256"] == hashlib.sha256(open(model, "rb").read()).hexdigest(), m
PY
check "tandem report marks the run as a replay" \
  bash -c "'$tandem' report '$work/replayed' | grep -q 'replay of $work/recorded'"

# 2. A changed input: one more step than was recorded.
sed 's/steps = 300/steps = 301/' "$work/surrogate.toml" > "$work/changed.toml"
run changed "$work/changed.toml" --replay "$work/recorded"
check "a run whose inputs diverge fails" test $? -ne 0
check "the divergence names the service, the input and the byte offset" \
  grep -qE "replay of service 'closure' from .*were never recorded; it first differs from the nearest recorded request \(replica-0.h5, request [0-9]+\) in input 'x' at byte offset [0-9]+" \
  "$work/changed/journal.jsonl"
check "and the task it happened in" python3 - "$work/changed/journal.jsonl" <<'PY'
import json, sys
failed = [json.loads(l) for l in open(sys.argv[1]) if '"FAILED"' in l]
assert failed and all(r["task"] == "surrogate" for r in failed), failed[:1]
PY

# tandem validate refuses a loop of fallbacks, naming its line.
printf '[[service]]\nname="a"\nbackend="echo"\nfallback="service:b"\n[[service]]\nname="b"\nbackend="echo"\nfallback="service:a"\n' \
  > "$work/loop.toml"
"$tandem" validate "$work/loop.toml" > "$work/loop.log" 2>&1
check "validate refuses a fallback loop" test $? -ne 0
check "naming file, line and key" grep -q "loop.toml:4:.*service\[0\].fallback.*loop: a -> b -> a" "$work/loop.log"

# 3. C, Python and Fortran clients against a replay.
export ANY_LANGUAGE_BUILD="$build/examples/any-language"
recording_copy any-language "$work/any.toml"
run any-recorded "$work/any.toml"
check "any-language records" test $? -eq 0
run any-replayed "$work/any.toml" --replay "$work/any-recorded"
check "any-language replays" test $? -eq 0
for lang in c python fortran; do
  check "the $lang client got the recorded answers" \
    cmp -s "$work/any-recorded/tasks/$lang/0.out" "$work/any-replayed/tasks/$lang/0.out"
done
check "its compare task agrees" grep -q "largest difference" "$work/any-replayed/tasks/compare/0.out"

finish "deadlines.replay"
