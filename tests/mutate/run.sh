#!/usr/bin/env bash
# run.sh - mutation testing: does each small deliberate bug in
# tests/mutate/mutants.sh make its tests fail?  (`make mutate`)
#
#   tests/mutate/run.sh [ID-substring]
#
# The working tree is never touched: the sources (and build/, so that only a
# mutated file recompiles) are copied to a scratch directory, where each
# mutant is applied, built and tested in turn, then undone. First the tests
# the mutants name run once on the unmutated copy: they must pass there, or
# a "kill" would mean nothing. Prints killed/SURVIVED per mutant and the
# score; exits 1 when a mutant survives, fails to apply or does not build.
# Knobs: MUTATE_KEEP=1 keeps the scratch directory; MUTATE_TIMEOUT (s, per
# test command, default 120); MUTATE_TESTS replaces every mutant's tests (to
# show that a mutant survives the tests it had before a new one).
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
FILTER=${1:-}
TIMEOUT=${MUTATE_TIMEOUT:-120}

# ---- the table ----------------------------------------------------------------
IDS=() FILES=() TESTS=() SEDS=()
mutant() {
    local id=$1 file=$2 tests=$3
    shift 3
    [[ -n $FILTER && $id != *"$FILTER"* ]] && return
    local rules=() r
    for r in "$@"; do rules+=(-e "$r"); done
    IDS+=("$id") FILES+=("$file") TESTS+=("${MUTATE_TESTS:-$tests}")
    SEDS+=("$(printf '%q ' "${rules[@]}")")
}
# shellcheck source=tests/mutate/mutants.sh
. "$ROOT/tests/mutate/mutants.sh"
if [[ ${#IDS[@]} -eq 0 ]]; then echo "mutate: no mutant matches '$FILTER'"; exit 1; fi

# ---- the scratch copy ---------------------------------------------------------
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/smp-mutate.XXXXXX")
TREE=$SCRATCH/tree
cleanup() { [[ ${MUTATE_KEEP:-0} == 1 ]] && echo "mutate: scratch kept in $SCRATCH" || rm -rf "$SCRATCH"; }
trap cleanup EXIT
mkdir -p "$TREE"
# Tests and the Makefile reach the shared assets as ../shared.
ln -s "$(cd "$ROOT/../shared" 2>/dev/null && pwd || echo "$ROOT/../shared")" "$SCRATCH/shared"
# tar keeps modification times, so the copied build/ is as up to date as it was.
(cd "$ROOT" && tar -cf - --exclude=node_modules Makefile src tests $( [[ -d build ]] && echo build )) | tar -xf - -C "$TREE"
mkdir -p "$SCRATCH/orig"

# Build what a set of tests needs; quiet unless it fails.
targets_for() {
    local t out=()
    for t in $1; do
        case $t in
        unit:*) out+=(build/unit_tests) ;;
        node:*) out+=(build/simpleton) ;;
        fuzz:*) out+=("build/fuzz_${t#fuzz:}_replay") ;;
        esac
    done
    printf '%s\n' "${out[@]}" | sort -u | tr '\n' ' '
}
build() { (cd "$TREE" && nice make -s -j2 $(targets_for "$1") >"$SCRATCH/build.log" 2>&1); }

# Run one test selector in the scratch tree; 0 when the tests pass.
run_test() {
    local t=$1 log=$2
    (
        cd "$TREE" || exit 2
        case $t in
        unit:*) timeout "$TIMEOUT" nice build/unit_tests "${t#unit:}" ;;
        fuzz:*) n=${t#fuzz:}; timeout "$TIMEOUT" nice "build/fuzz_${n}_replay" "tests/fuzz/corpus/$n" ;;
        node:*)
            spec=${t#node:} file=${spec%%#*} pat=()
            [[ $spec == *"#"* ]] && pat=(--test-name-pattern="${spec#*#}")
            SIMPLETON_BIN=$TREE/build/simpleton timeout "$TIMEOUT" nice node --test --test-concurrency=1 "${pat[@]}" "$file"
            ;;
        *) echo "unknown test selector '$t'"; exit 2 ;;
        esac
    ) >"$log" 2>&1
}

# A test spec is space-separated selectors, but a node name pattern may hold
# spaces: split on " unit:", " node:", " fuzz:" only.
selectors() { sed -E 's/ +(unit|node|fuzz):/\n\1:/g' <<<"$1"; }

# Run every selector of a spec; 0 when all pass, else 1 and the failing one
# in $FAILED.
FAILED=
run_tests() {
    local s i=0
    while IFS= read -r s; do
        [[ -z $s ]] && continue
        i=$((i + 1))
        if ! run_test "$s" "$SCRATCH/test.log"; then FAILED=$s; return 1; fi
    done < <(selectors "$1")
    return 0
}

START=$(date +%s)
echo "mutate: ${#IDS[@]} mutants; scratch $SCRATCH"

# ---- baseline: the named tests pass on the code as it is ------------------------
declare -A SEEN=()
ALL=
for t in "${TESTS[@]}"; do
    while IFS= read -r s; do [[ -n $s && -z ${SEEN[$s]:-} ]] && SEEN[$s]=1 && ALL+=" $s"; done < <(selectors "$t")
done
if ! build "$ALL"; then echo "mutate: the unmutated copy does not build:"; tail -20 "$SCRATCH/build.log"; exit 1; fi
while IFS= read -r s; do
    [[ -z $s ]] && continue
    if ! run_test "$s" "$SCRATCH/test.log"; then
        echo "mutate: '$s' fails before any mutation; fix that first:"
        tail -20 "$SCRATCH/test.log"
        exit 1
    fi
done < <(selectors "${ALL# }")
echo "mutate: baseline passes ($(( $(date +%s) - START )) s)"

# ---- the mutants ----------------------------------------------------------------
killed=0 survived=0 broken=0
SURVIVORS=()
for i in "${!IDS[@]}"; do
    id=${IDS[$i]} file=${FILES[$i]} tests=${TESTS[$i]}
    t0=$(date +%s)
    src=$TREE/$file orig=$SCRATCH/orig/${file//\//_}
    [[ -f $orig ]] || cp -p "$src" "$orig"
    eval "rules=(${SEDS[$i]})"
    # Every rule must change the file on its own.
    ok=1 cur=$SCRATCH/cur
    cp "$orig" "$cur"
    for ((r = 0; r < ${#rules[@]}; r += 2)); do
        sed "${rules[r]}" "${rules[r + 1]}" "$cur" >"$cur.next"
        if cmp -s "$cur" "$cur.next"; then ok=0; echo "  BROKEN    $id: rule '${rules[r + 1]}' changes nothing in $file"; break; fi
        mv "$cur.next" "$cur"
    done
    if [[ $ok == 1 ]]; then
        cp "$cur" "$src"
        if ! build "$tests"; then
            ok=0
            echo "  BROKEN    $id: does not build"
            grep -m3 -E 'error' "$SCRATCH/build.log" | sed 's/^/            /'
        fi
    fi
    if [[ $ok == 0 ]]; then
        broken=$((broken + 1))
    elif run_tests "$tests"; then
        survived=$((survived + 1))
        SURVIVORS+=("$id")
        printf '  SURVIVED  %-28s %4ss  %s\n' "$id" $(( $(date +%s) - t0 )) "$tests"
    else
        killed=$((killed + 1))
        printf '  killed    %-28s %4ss  by %s\n' "$id" $(( $(date +%s) - t0 )) "$FAILED"
    fi
    # Undo, with a new modification time so the next build recompiles it.
    cp "$orig" "$src"
    touch "$src"
done

total=$((killed + survived))
score=$(( total ? killed * 100 / total : 0 ))
echo "mutate: $killed of $total killed (score $score%), $survived survived, $broken broken; $(( $(date +%s) - START )) s"
[[ $survived -gt 0 ]] && echo "mutate: survivors: ${SURVIVORS[*]}"
[[ $survived -eq 0 && $broken -eq 0 ]]
