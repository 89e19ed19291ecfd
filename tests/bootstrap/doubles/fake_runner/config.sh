#!/bin/bash
# Fake config.sh: the guard, dependency checks, directory handling and dispatch of
# actions/runner's src/Misc/layoutroot/config.sh.

user_id=`id -u`

# we want to snapshot the environment of the config user
if [ $user_id -eq 0 -a -z "$RUNNER_ALLOW_RUNASROOT" ]; then
    echo "Must not run with sudo"
    exit 1
fi

# Check dotnet Core 6.0 dependencies for Linux, as the real config.sh does; only
# ldconfig is the fake's (bin/fake-ldconfig next to this script: the VM's linker
# cache as the test sets it, else the real ldconfig).
if [[ (`uname` == "Linux") ]]
then
    command -v ldd > /dev/null
    if [ $? -ne 0 ]
    then
        echo "Can not find 'ldd'. Please install 'ldd' and try again."
        exit 1
    fi

    message="Execute sudo ./bin/installdependencies.sh to install any missing Dotnet Core 6.0 dependencies."

    for lib in libcoreclr.so libSystem.Security.Cryptography.Native.OpenSsl.so libSystem.IO.Compression.Native.so; do
        if [ -e ./bin/$lib ] && ldd ./bin/$lib | grep 'not found'; then
            echo "Dependencies is missing for Dotnet Core 6.0"
            echo $message
            exit 1
        fi
    done

    LDCONFIG_COMMAND="$(dirname "${BASH_SOURCE[0]}")/bin/fake-ldconfig"
    libpath=${LD_LIBRARY_PATH:-}
    $LDCONFIG_COMMAND -NXv ${libpath//:/ } 2>&1 | grep libicu >/dev/null 2>&1
    if [ $? -ne 0 ]; then
        echo "Libicu's dependencies is missing for Dotnet Core 6.0"
        echo $message
        exit 1
    fi
fi

# Change directory to the script root directory
SOURCE="${BASH_SOURCE[0]}"
while [ -h "$SOURCE" ]; do
    DIR="$( cd -P "$( dirname "$SOURCE" )" && pwd )"
    SOURCE="$(readlink "$SOURCE")"
    [[ $SOURCE != /* ]] && SOURCE="$DIR/$SOURCE"
done
DIR="$( cd -P "$( dirname "$SOURCE" )" && pwd )"
cd "$DIR"

source ./env.sh

shopt -s nocasematch
if [[ "$1" == "remove" ]]; then
    _FAKE_RUNNER_ENTRY=config.sh ./bin/Runner.Listener "$@"
else
    _FAKE_RUNNER_ENTRY=config.sh ./bin/Runner.Listener configure "$@"
fi
