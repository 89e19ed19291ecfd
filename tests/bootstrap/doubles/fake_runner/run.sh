#!/bin/bash
# Fake run.sh: the real script's structure, kept on purpose. Without
# RUNNER_MANUALLY_TRAP_SIG, bash runs the helper in the foreground and a SIGTERM
# to this script's pid alone does NOT reach the listener (signal the process
# group, or set RUNNER_MANUALLY_TRAP_SIG=1 so SIGINT/SIGTERM are forwarded).

SOURCE="${BASH_SOURCE[0]}"
while [ -h "$SOURCE" ]; do
    DIR="$( cd -P "$( dirname "$SOURCE" )" && pwd )"
    SOURCE="$(readlink "$SOURCE")"
    [[ $SOURCE != /* ]] && SOURCE="$DIR/$SOURCE"
done
DIR="$( cd -P "$( dirname "$SOURCE" )" && pwd )"

run() {
    # run the helper process which keep the listener alive
    while :;
    do
        cp -f "$DIR"/run-helper.sh.template "$DIR"/run-helper.sh
        "$DIR"/run-helper.sh $*
        returnCode=$?
        if [[ $returnCode -eq 2 ]]; then
            echo "Restarting runner..."
        else
            echo "Exiting runner..."
            exit 0
        fi
    done
}

runWithManualTrap() {
    # Set job control
    set -m

    signaled=0
    _trap() {
      kill -INT -$PID
      signaled=1
    }

    trap '_trap' INT TERM

    while :;
    do
        cp -f "$DIR"/run-helper.sh.template "$DIR"/run-helper.sh
        "$DIR"/run-helper.sh $* &
        PID=$!
        wait $PID
        if [ $signaled -eq 1 ]; then
          # We must wait again for the child process to finish in order to capture the correct return code.
          wait $PID
        fi

        returnCode=$?
        if [[ $returnCode -eq 2 ]]; then
            echo "Restarting runner..."
        else
            echo "Exiting runner..."
            trap - INT TERM
            wait $PID
            exit $returnCode
        fi
    done
}

if [[ -z "$RUNNER_MANUALLY_TRAP_SIG" ]]; then
    run $*
else
    runWithManualTrap $*
fi
