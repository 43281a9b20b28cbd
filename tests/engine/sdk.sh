# Scenario 2: the Python docker SDK (sdk.py). Sourced by run.sh.
scenario_sdk() {
    echo "# scenario sdk"
    if ! python3 -c 'import docker' 2>/dev/null; then
        python3 -m venv "$T/venv" >/dev/null 2>&1 && "$T/venv/bin/pip" install -q docker >/dev/null 2>&1
        if [ -x "$T/venv/bin/python3" ] && "$T/venv/bin/python3" -c 'import docker' 2>/dev/null; then
            PY=$T/venv/bin/python3
        else
            skip "the Python docker SDK is not installed and pip install docker failed"
            return
        fi
    else
        PY=python3
    fi
    local line
    while IFS= read -r line; do
        case "$line" in
            "ok   "*) ok "${line#ok   }" ;;
            "FAIL "*) fail "${line#FAIL }" ;;
            *) echo "     $line" ;;
        esac
    done < <(timeout 120 "$PY" "$HERE/sdk.py" 2>&1; echo "exit $?")
    local left
    left=$(timeout 10 "$DOCKER28" ps -aq)
    [ -n "$left" ] && timeout 30 "$DOCKER28" rm -f $left >/dev/null 2>&1
}
