#!/usr/bin/env bash
# Breaks the tracer on purpose and shows that the tests catch it: applies
# tests/mutations/NAME.patch to the sources, builds, runs the tests that must now fail, and puts
# the sources back whatever happens (a failed build, Ctrl-C, SIGTERM, SIGHUP). As root, from
# anywhere:
#   tests/mutations/run.sh NAME...     (or: all)
# Prints one line per mutation: "caught" (the tests failed, as they must) or "SURVIVED", and
# exits 1 if one survived. docs/reliability.md records a run and what the old tests did.
#   overload-drop-all  BPF side observes 1 write in 1000, counts the rest lost -> overload
#   crash-by-signal    inspect prints its error line, then dies by SIGSEGV      -> cli_errors
#   budget-inflate     budget estimates × 1.67, bounds as measured             -> budget (server)
#   hang-on-exec       the tracer never returns once its target exec'd         -> lifecycle
#   hidden-plus-ten    trace reports 10 writes more not shown than it hid      -> fleet
set -euo pipefail
cd "$(dirname "$0")/../.."
declare -A CATCH=(
  [overload-drop-all]="--test overload"
  [crash-by-signal]="--test cli_errors truncated_and_corrupted_go_binaries"
  [budget-inflate]="--test budget -- closed_loop open_loop"
  [hang-on-exec]="--test lifecycle exec_ends_a_command_trace"
  [hidden-plus-ten]="--test fleet trace_binary_json"
)
ALL=(overload-drop-all crash-by-signal budget-inflate hang-on-exec hidden-plus-ten)
names=("$@")
[[ ${names[0]:-} == all ]] && names=("${ALL[@]}")
((${#names[@]})) || { echo "usage: $0 NAME... | all (${ALL[*]})" >&2; exit 2; }
for name in "${names[@]}"; do
  [[ -f tests/mutations/$name.patch && -n ${CATCH[$name]:-} ]] ||
    { echo "mutation: no tests/mutations/$name.patch" >&2; exit 2; }
done
git diff --quiet -- src || { echo "mutation: src/ has uncommitted changes; commit or stash them first" >&2; exit 2; }

# The patch applied now, if any: the EXIT trap takes it out again. A signal ends the script
# through `exit`, so the EXIT trap runs for it too.
applied=
restore() {
  if [[ -n $applied ]]; then
    git apply -R "$applied" && applied= ||
      echo "mutation: could not take $applied out of src/ (git checkout -- src)" >&2
  fi
}
trap restore EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

survived=0
for name in "${names[@]}"; do
  patch=tests/mutations/$name.patch
  git apply "$patch"
  applied=$patch
  cargo build --quiet --all-targets
  log=target/mutation-$name.log
  # shellcheck disable=SC2086 # CATCH holds cargo arguments
  if cargo test --quiet ${CATCH[$name]} >"$log" 2>&1; then
    echo "$name: SURVIVED (${CATCH[$name]} passed; log $log)"
    survived=1
  else
    echo "$name: caught (${CATCH[$name]} failed: $(grep -m1 -A2 "panicked at" "$log" | tail -n +2 | tr '\n' ' '); log $log)"
  fi
  restore
done
# Leave the tracer built from the real sources.
cargo build --quiet --all-targets
exit "$survived"
