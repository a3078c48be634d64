#!/usr/bin/env bash
# Create a Cloud TPU VM, install bert_flax on every worker, run `bert-flax pretrain` on all of them
# (one JAX process per worker) and fetch the run directory: a thin wrapper over
# `gcloud compute tpus tpu-vm`. `--help` documents it; scripts/README.md has examples.
set -euo pipefail

PROG=$(basename "$0")
DEFAULT_REF=main
DEFAULT_REMOTE_DIR=bert_flax
DEFAULT_PYTHON=3.12
DEFAULT_POLL_SECONDS=30
# Matches bert_flax.cli._OVERRIDE: section.key=value.
OVERRIDE_RE='^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*='

usage() {
    cat <<EOF
Usage: $PROG COMMAND --name NAME --zone ZONE [options] [--] [section.key=value ...]

Run bert-flax pre-training on a Cloud TPU VM (single host or pod slice) with
\`gcloud compute tpus tpu-vm\`. Every command takes the same options (those it does
not use are ignored), so one command line can be rerun with another COMMAND.

Commands:
  create    describe the TPU VM; create it only when it does not exist. A READY one
            is reused, a STOPPED one started, a CREATING (STARTING, RESTARTING,
            REPAIRING) one waited for until READY; a PREEMPTED or TERMINATED one is
            an error (\`delete\`, then \`up\`). When describe fails for another
            reason than "not found" (permissions, the TPU API not enabled, a wrong
            project), its error is shown and nothing is created.
            With --queued: a queued resource NAME (node NAME) is requested instead,
            or reused, and waited for until ACTIVE.
  install   on every worker (--worker=all): clone the repository into
            ~/REMOTE_DIR or update it (fetch REF, check it out detached), make
            REMOTE_DIR/.venv with uv and --python, then \`pip install -e ".[tpu,gcs]"\`
  run       on every worker: cd ~/REMOTE_DIR && .venv/bin/bert-flax pretrain
            --config CONFIG --run-dir RUN_DIR [section.key=value ...]
            parallel.distributed=true
            (jax.distributed.initialize() finds the other workers by itself).
            Started with nohup in the background, output appended to
            ~/REMOTE_DIR/logs/pretrain-HOSTNAME.log on each worker, so an ssh
            disconnect does not stop training; --follow runs it in the foreground.
            Refused on a worker where the previous \`run\` is still running.
            Read the log: gcloud compute tpus tpu-vm ssh NAME --zone=ZONE
              --worker=0 --command='tail -n 40 bert_flax/logs/pretrain-*.log'
  fetch     copy RUN_DIR to DEST/: from the bucket (gcloud storage cp --recursive)
            when it is gs://..., else from worker 0 (scp --recurse --worker=0)
  delete    delete the TPU VM (gcloud asks to confirm unless --yes); with --queued,
            the queued resource and its TPU VM
  up        create, install, run

Options:
  --name NAME           TPU VM name (required)
  --zone ZONE           zone, e.g. us-central1-a, europe-west4-a (required)
  --project PROJECT     Google Cloud project (default: gcloud's configured project)
  --accelerator TYPE    accelerator type, e.g. v3-8, v4-32, v5litepod-8 (required by create)
  --version VERSION     TPU software version (default by generation: v2, v3, v4:
                        tpu-ubuntu2204-base; v5litepod: v2-alpha-tpuv5-lite;
                        v5p: v2-alpha-tpuv5; v6e: v2-alpha-tpuv6e)
  --spot                create a Spot VM (cheaper; can be preempted at any time)
  --preemptible         create a legacy preemptible VM (at most 24 h; not with --queued)
  --queued              create through a queued resource: the request waits in Cloud
                        TPU's queue until capacity is free, where a direct create
                        fails outright when it is short. Google recommends it for
                        new generations (v5e, v6e) and Spot VMs.
  --wait-timeout SECS   create: give up waiting for READY / ACTIVE after SECS seconds
                        (default 0: wait as long as it takes; a queued request can
                        take hours). Checked every \$TPU_VM_POLL_SECONDS (default $DEFAULT_POLL_SECONDS).
  --repo URL            git URL the workers clone (required by install; must be
                        reachable from the workers without your credentials)
  --ref REF             branch, tag or full commit hash to check out (default: $DEFAULT_REF)
  --remote-dir DIR      checkout on each worker, relative to its home directory or
                        absolute (default: $DEFAULT_REMOTE_DIR)
  --python VERSION      Python of the workers' virtual environment (default: $DEFAULT_PYTHON;
                        JAX 0.10 needs 3.11, JAX 0.11 and newer 3.12; Ubuntu 22.04
                        images ship 3.10, so uv installs the one asked for)
  --config FILE         config on the workers, relative to REMOTE_DIR (e.g.
                        configs/meditations_scratch.yaml) or absolute
  --run-dir DIR         run directory: gs://BUCKET/PREFIX (recommended: it outlives the VM,
                        every worker reaches it), or a path on the workers, relative to
                        REMOTE_DIR or absolute (required by run and fetch)
  --follow              run: stay attached and stream the output (then Ctrl-C or an ssh
                        disconnect can stop training; rerun \`run\` to resume)
  --dest DIR            fetch: local directory the run directory is copied into
                        (default: runs/NAME, giving runs/NAME/BASENAME_OF_RUN_DIR)
  --yes                 delete: do not ask for confirmation
  --dry-run             print every gcloud command instead of running it
  -h, --help            this help

Trailing section.key=value arguments are passed to \`bert-flax pretrain\` as config
overrides (shell-quoted for the remote shell); parallel.distributed=true is always
added and may not be given.

Run directory: every worker runs one JAX process, and every process writes its own
part of each checkpoint into RUN_DIR; only process 0 (worker 0) writes config.yaml,
metrics.jsonl, tokenizer/ and final/. Use --run-dir gs://BUCKET/PREFIX for a pod slice
and for a Spot VM: bert-flax writes the run into the bucket itself (checkpoints through
Orbax's gs:// support), every worker reaches it, and it outlives the VM; the VM's
service account needs read and write access to the bucket (and storage.buckets.get).
Alternatives: a file system every worker mounts at the same path (a Filestore share, or
the bucket mounted with gcsfuse, where Orbax's renames become copies); on a single-host
VM (v3-8, ...) the boot disk, which is lost with the VM.

Resume: rerun \`run\` (or \`up\`) with the same arguments; pretrain continues from the
newest checkpoint in RUN_DIR. A preempted Spot VM cannot be restarted: \`delete\` it
and \`up\` again, which resumes only if RUN_DIR is on storage that outlives the VM
(a gs:// RUN_DIR does).

Exit codes: 0 ok; 2 bad usage (one line on stderr); otherwise gcloud's or the remote
command's code.
EOF
}

die_usage() {
    printf 'error: %s\n' "$1" >&2
    exit 2
}

# One argument quoted for a POSIX shell: bare when it holds only safe characters, else in single
# quotes (an embedded ' becomes '\''). Unlike printf %q, the result is readable and never uses
# bash-only $'...', so it means the same to the remote login shell and to a user's copy-paste.
shquote() {
    local q="'\\''"
    if [[ "$1" =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
        printf '%s' "$1"
    else
        printf "'%s'" "${1//\'/$q}"
    fi
}

# The command as one shell-quoted line (what --dry-run prints and what runs echo to stderr).
quoted() {
    local out="" arg
    for arg in "$@"; do
        out+="${out:+ }$(shquote "$arg")"
    done
    printf '%s\n' "$out"
}

# `gcloud ...`, echoed to stderr, or only printed with --dry-run.
run_gcloud() {
    local cmd=(gcloud "$@")
    if ((dry_run)); then
        quoted "${cmd[@]}"
    else
        printf '+ %s\n' "$(quoted "${cmd[@]}")" >&2
        "${cmd[@]}"
    fi
}

# `gcloud compute tpus GROUP ...` (GROUP: tpu-vm or queued-resources).
gcloud_tpus() {
    run_gcloud compute tpus "$@"
}

gcloud_tpu() {
    gcloud_tpus tpu-vm "$@"
}

# `gcloud compute tpus GROUP describe NAME --format=value(FIELDS)`: prints the values and returns 0,
# or returns 3 when there is no such resource. Any other failure (permissions, a disabled API, a
# wrong project) is shown and returns 1: it must not read as "not found, create it". Callers run it
# in $(...), so they end the script on 1 themselves (`|| status=$?`, then `exit_unless_found`).
describe() {
    local group=$1 fields=$2 out status=0 err
    local cmd=(gcloud compute tpus "$group" describe "$name" "${location[@]}" "--format=value($fields)")
    printf '+ %s\n' "$(quoted "${cmd[@]}")" >&2
    err=$(mktemp)
    out=$("${cmd[@]}" 2>"$err") || status=$?
    if ((status == 0)); then
        rm -f "$err"
        printf '%s\n' "$out"
        return 0
    fi
    if grep -qiE 'NOT_FOUND|not found' "$err"; then
        rm -f "$err"
        return 3
    fi
    cat "$err" >&2
    rm -f "$err"
    echo "error: gcloud could not describe $group $name (above, exit $status); fix that first (credentials, the Cloud TPU API, --project, --zone)" >&2
    return 1
}

# After `found=$(describe ...) || status=$?`: end the script when describe failed (it said why).
exit_unless_found() {
    if (($1 != 0 && $1 != 3)); then exit 1; fi
}

# Poll `describe GROUP` until its state (the first field) is WANTED; a state in STOP ends the script.
wait_for_state() {
    local group=$1 fields=$2 wanted=$3 stop=$4 waited=0 found state status
    while :; do
        status=0
        found=$(describe "$group" "$fields") || status=$?
        exit_unless_found "$status"
        if ((status == 3)); then
            echo "error: $group $name disappeared while waiting for $wanted" >&2
            exit 1
        fi
        state=${found%%[[:space:]]*}
        if [[ "$state" == "$wanted" ]]; then return 0; fi
        if [[ " $stop " == *" $state "* ]]; then
            local delete="$PROG delete"
            if ((queued)); then delete+=" --queued"; fi
            echo "error: $group $name is $state, not $wanted; run '$delete' then '$PROG up'" >&2
            exit 1
        fi
        if ((wait_timeout > 0 && waited >= wait_timeout)); then
            echo "error: $group $name is still ${state:-in no state} after ${waited} s (--wait-timeout $wait_timeout)" >&2
            exit 1
        fi
        echo "$group $name is ${state:-in no state yet}; waiting for $wanted (checking every $poll_seconds s)" >&2
        sleep "$poll_seconds"
        waited=$((waited + poll_seconds))
    done
}

default_version() {
    case "${1%%-*}" in
        v2 | v3 | v4) echo tpu-ubuntu2204-base ;;
        v5litepod | v5e) echo v2-alpha-tpuv5-lite ;;
        v5p) echo v2-alpha-tpuv5 ;;
        v6e) echo v2-alpha-tpuv6e ;;
        *) die_usage "no default TPU software version for accelerator '$1'; pass --version" ;;
    esac
}

# A path on the worker, relative to its home directory (what scp and a fresh ssh shell start in).
remote_path() {
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s/%s\n' "$remote_dir" "$1" ;;
    esac
}

cmd_create() {
    [[ -n "$accelerator" ]] || die_usage "create needs --accelerator (e.g. v3-8, v4-32, v5litepod-8)"
    local version=$runtime_version
    # Not `local version=$(...)`: `local` would hide default_version's exit status from `set -e`.
    if [[ -z "$version" ]]; then version=$(default_version "$accelerator"); fi
    if ((queued)); then
        create_queued "$version"
        return
    fi
    local create=(create "$name" "${location[@]}" "--accelerator-type=$accelerator" "--version=$version")
    if [[ -n "$capacity" ]]; then create+=("$capacity"); fi
    if ((dry_run)); then
        gcloud_tpu describe "$name" "${location[@]}" "--format=value(state,acceleratorType)"
        echo "# create runs only when describe finds no TPU VM (a STOPPED one is started, a CREATING one waited for):"
        gcloud_tpu "${create[@]}"
        return
    fi
    local found state type status=0
    found=$(describe tpu-vm "state,acceleratorType") || status=$?
    exit_unless_found "$status"
    if ((status == 3)); then
        echo "no TPU VM $name found; creating it ($accelerator, $version)" >&2
        gcloud_tpu "${create[@]}"
        return
    fi
    read -r state type <<<"$found" || true
    if [[ -n "$type" && "$type" != "$accelerator" ]]; then
        echo "warning: $name is a $type, not the requested $accelerator" >&2
    fi
    case "$state" in
        READY) echo "TPU VM $name exists (state READY, ${type:-unknown type}); reusing it" >&2 ;;
        STOPPED | STOPPING)
            echo "TPU VM $name is $state; starting it" >&2
            if [[ "$state" == STOPPING ]]; then wait_for_state tpu-vm state STOPPED "$NODE_LOST"; fi
            gcloud_tpu start "$name" "${location[@]}"
            wait_for_state tpu-vm state READY "$NODE_LOST"
            ;;
        CREATING | STARTING | RESTARTING | REPAIRING | REIMAGING)
            echo "TPU VM $name is $state; waiting until it is READY" >&2
            wait_for_state tpu-vm state READY "$NODE_LOST"
            ;;
        PREEMPTED | TERMINATED)
            echo "error: TPU VM $name is $state and cannot be restarted; run '$PROG delete' then '$PROG up'" >&2
            exit 1
            ;;
        *)
            echo "error: TPU VM $name is ${state:-in an unknown state}; wait, or run '$PROG delete' then '$PROG up'" >&2
            exit 1
            ;;
    esac
}

# A queued resource NAME whose node is NAME: requested unless it exists, then waited for until ACTIVE.
create_queued() {
    local version=$1
    local create=(create "$name" "--node-id=$name" "${location[@]}" "--accelerator-type=$accelerator"
        "--runtime-version=$version")
    if [[ -n "$capacity" ]]; then create+=("$capacity"); fi
    if ((dry_run)); then
        gcloud_tpus queued-resources describe "$name" "${location[@]}" "--format=value(state.state)"
        echo "# create runs only when describe finds no queued resource; then describe until ACTIVE:"
        gcloud_tpus queued-resources "${create[@]}"
        return
    fi
    local found status=0
    found=$(describe queued-resources state.state) || status=$?
    exit_unless_found "$status"
    if ((status == 3)); then
        echo "no queued resource $name found; requesting one ($accelerator, $version)" >&2
        gcloud_tpus queued-resources "${create[@]}"
    else
        echo "queued resource $name exists (state ${found:-unknown}); reusing it" >&2
    fi
    wait_for_state queued-resources state.state ACTIVE "FAILED SUSPENDING SUSPENDED DELETING"
    echo "queued resource $name is ACTIVE: TPU VM $name is ready" >&2
}

cmd_install() {
    [[ -n "$repo" ]] || die_usage "install needs --repo URL (a git URL the workers can clone)"
    local dir repo_q ref_q py_q
    dir=$(shquote "$remote_dir")
    repo_q=$(shquote "$repo")
    ref_q=$(shquote "$ref")
    py_q=$(shquote "$python_version")
    local script
    script="set -euo pipefail; export PATH=\"\$HOME/.local/bin:\$PATH\"; cd; "
    script+="if [ -d $dir/.git ]; then git -C $dir remote set-url origin $repo_q; "
    script+="else git clone --quiet $repo_q $dir; fi; "
    script+="git -C $dir fetch --quiet origin $ref_q; git -C $dir checkout --quiet --detach FETCH_HEAD; "
    script+="command -v uv >/dev/null || python3 -m pip install --quiet --user uv "
    script+="|| python3 -m pip install --quiet --user --break-system-packages uv; "
    script+="[ -x $dir/.venv/bin/python ] || uv venv --quiet --seed --python $py_q $dir/.venv; "
    script+="$dir/.venv/bin/python -m pip install --quiet --upgrade pip; "
    script+="cd $dir && .venv/bin/python -m pip install --quiet -e '.[tpu,gcs]'; "
    script+="echo \"\$(hostname): bert_flax \$(git rev-parse --short HEAD) installed in \$PWD/.venv\""
    gcloud_tpu ssh "$name" "${location[@]}" --worker=all "--command=$script"
}

cmd_run() {
    [[ -n "$run_dir" ]] || die_usage "run needs --run-dir DIR (where checkpoints and metrics go on the workers)"
    local pretrain=(.venv/bin/bert-flax pretrain)
    if [[ -n "$config" ]]; then pretrain+=(--config "$config"); fi
    # ${a[@]+"${a[@]}"}: an empty array under `set -u` in bash 3.2 (macOS) too.
    pretrain+=(--run-dir "$run_dir" ${overrides[@]+"${overrides[@]}"} parallel.distributed=true)
    local argv
    argv=$(quoted "${pretrain[@]}")
    local script
    script="set -euo pipefail; cd; cd $(shquote "$remote_dir"); mkdir -p logs; "
    script+="log=logs/pretrain-\$(hostname).log; pid=logs/pretrain-\$(hostname).pid; "
    script+="if [ -f \"\$pid\" ] && kill -0 \"\$(cat \"\$pid\")\" 2>/dev/null; then "
    script+="echo \"\$(hostname): pretrain is still running (pid \$(cat \"\$pid\"), log \$PWD/\$log)\" >&2; exit 1; fi; "
    script+="echo \"=== \$(date -u +%FT%TZ) \$(git rev-parse --short HEAD) \$(hostname)\" >> \"\$log\"; "
    if ((follow)); then
        script+="echo \$\$ > \"\$pid\"; $argv 2>&1 | tee -a \"\$log\""
    else
        script+="nohup $argv >> \"\$log\" 2>&1 < /dev/null & echo \$! > \"\$pid\"; "
        script+="echo \"\$(hostname): pretrain started (pid \$!), log \$PWD/\$log\""
    fi
    gcloud_tpu ssh "$name" "${location[@]}" --worker=all "--command=$script"
}

cmd_fetch() {
    [[ -n "$run_dir" ]] || die_usage "fetch needs --run-dir DIR (the run directory on the workers)"
    local dest=${dest_dir:-runs/$name}
    ((dry_run)) || mkdir -p "$dest"
    if [[ "$run_dir" == gs://* ]]; then
        local project_flag=()
        if [[ -n "$project" ]]; then project_flag=("--project=$project"); fi
        run_gcloud storage cp --recursive "$run_dir" "$dest/" ${project_flag[@]+"${project_flag[@]}"}
        return
    fi
    gcloud_tpu scp --recurse --worker=0 "$name:$(remote_path "$run_dir")" "$dest/" "${location[@]}"
}

cmd_delete() {
    local delete=(tpu-vm delete "$name" "${location[@]}")
    # --force: the queued resource's TPU VM is deleted with it.
    if ((queued)); then delete=(queued-resources delete "$name" "${location[@]}" --force); fi
    if ((yes)); then delete+=(--quiet); fi
    gcloud_tpus "${delete[@]}"
}

# --- arguments ---------------------------------------------------------------------------------
if (($# == 0)); then
    die_usage "missing COMMAND (create, install, run, fetch, delete or up); see $PROG --help"
fi
case "$1" in
    -h | --help)
        usage
        exit 0
        ;;
    create | install | run | fetch | delete | up) command=$1 ;;
    *) die_usage "unknown command '$1' (create, install, run, fetch, delete or up); see $PROG --help" ;;
esac
shift

name="" zone="" project="" accelerator="" runtime_version="" capacity="" repo="" ref=$DEFAULT_REF
remote_dir=$DEFAULT_REMOTE_DIR python_version=$DEFAULT_PYTHON config="" run_dir="" dest_dir=""
follow=0 yes=0 dry_run=0 queued=0 wait_timeout=0
poll_seconds=${TPU_VM_POLL_SECONDS:-$DEFAULT_POLL_SECONDS}
NODE_LOST="PREEMPTED TERMINATED DELETING"  # states a TPU VM being waited for never leaves
overrides=()

while (($#)); do
    arg=$1
    case "$arg" in
        -h | --help)
            usage
            exit 0
            ;;
        --spot | --preemptible)
            [[ -z "$capacity" || "$capacity" == "$arg" ]] || die_usage "--spot and --preemptible exclude each other"
            capacity=$arg
            ;;
        --follow) follow=1 ;;
        --queued) queued=1 ;;
        --yes) yes=1 ;;
        --dry-run) dry_run=1 ;;
        --) shift && overrides+=("$@") && break ;;
        --name | --zone | --project | --accelerator | --version | --repo | --ref | --remote-dir | --python | \
            --config | --run-dir | --dest | --wait-timeout | \
            --name=* | --zone=* | --project=* | --accelerator=* | --version=* | --repo=* | --ref=* | \
            --remote-dir=* | --python=* | --config=* | --run-dir=* | --dest=* | --wait-timeout=*)
            if [[ "$arg" == *=* ]]; then
                option=${arg%%=*} value=${arg#*=}
            else
                (($# >= 2)) || die_usage "$arg needs a value"
                option=$arg value=$2
                shift
            fi
            [[ -n "$value" ]] || die_usage "$option needs a non-empty value"
            case "$option" in
                --name) name=$value ;;
                --zone) zone=$value ;;
                --project) project=$value ;;
                --accelerator) accelerator=$value ;;
                --version) runtime_version=$value ;;
                --repo) repo=$value ;;
                --ref) ref=$value ;;
                --remote-dir) remote_dir=${value#\~/} ;;
                --python) python_version=$value ;;
                --config) config=$value ;;
                --run-dir) run_dir=$value ;;
                --dest) dest_dir=$value ;;
                --wait-timeout)
                    [[ "$value" =~ ^[0-9]+$ ]] || die_usage "--wait-timeout '$value' is not a number of seconds"
                    wait_timeout=$value
                    ;;
            esac
            ;;
        -*) die_usage "unknown option '$arg'; see $PROG --help" ;;
        *) overrides+=("$arg") ;;
    esac
    shift
done

[[ -n "$name" ]] || die_usage "missing --name NAME (the TPU VM)"
[[ -n "$zone" ]] || die_usage "missing --zone ZONE (e.g. us-central1-a)"
[[ "$name" =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]] ||
    die_usage "--name '$name' is not a TPU VM name (lower-case letters, digits and '-', starting with a letter)"
if [[ -n "$accelerator" && ! "$accelerator" =~ ^v[0-9][a-z0-9]*-[0-9]+$ ]]; then
    die_usage "--accelerator '$accelerator' is not an accelerator type like v3-8, v4-32 or v5litepod-8"
fi
if ((queued)) && [[ "$capacity" == --preemptible ]]; then
    die_usage "--preemptible VMs cannot be queued; use --spot with --queued"
fi
[[ "$poll_seconds" =~ ^[0-9]+$ ]] || die_usage "TPU_VM_POLL_SECONDS '$poll_seconds' is not a number of seconds"
for item in ${overrides[@]+"${overrides[@]}"}; do
    [[ "$item" =~ $OVERRIDE_RE ]] || die_usage "'$item' is not a config override of the form section.key=value"
    [[ "$item" != parallel.distributed=* ]] || die_usage "parallel.distributed is always true here; remove '$item'"
done

location=("--zone=$zone")
if [[ -n "$project" ]]; then location+=("--project=$project"); fi

case "$command" in
    create) cmd_create ;;
    install) cmd_install ;;
    run) cmd_run ;;
    fetch) cmd_fetch ;;
    delete) cmd_delete ;;
    up)
        [[ -n "$repo" ]] || die_usage "up needs --repo URL (a git URL the workers can clone)"
        [[ -n "$run_dir" ]] || die_usage "up needs --run-dir DIR (where checkpoints and metrics go on the workers)"
        cmd_create
        cmd_install
        cmd_run
        ;;
esac
