#!/usr/bin/env bash
# Helpers shared by the TIPC scripts: parse "key:value" lines of
# train_infer_python.txt and report each step in TIPC's format.

# "key:value" -> key
func_parser_key() {
    local line=$1
    echo "${line%%:*}"
}

# "key:value" -> value (everything after the first ':', so values may hold ':')
func_parser_value() {
    local line=$1
    if [[ ${line} != *:* ]]; then echo ""; return; fi
    echo "${line#*:}"
}

# "key:mode1=v1|mode2=v2" -> the value for ${MODE} (empty if not listed)
func_parser_params() {
    local value item
    value=$(func_parser_value "$1")
    local IFS='|'
    for item in ${value}; do
        if [[ ${item%%=*} == "${MODE}" ]]; then
            echo "${item#*=}"
            return
        fi
    done
    echo ""
}

# key value -> "key=value", or nothing when either is null/empty
func_set_params() {
    local key=$1 value=$2
    if [[ -z ${key} || ${key} == "null" || -z ${value} || ${value} == "null" ]]; then
        echo ""
    else
        echo "${key}=${value}"
    fi
}

# status_check exit_code command status_log: prints and appends TIPC's line
status_check() {
    local last_status=$1 run_command=$2 run_log=$3 message
    if [[ ${last_status} -eq 0 ]]; then
        message="Run successfully with command - ${run_command}!"
    else
        message="Run failed with command - ${run_command}!"
        TIPC_FAILED=$((${TIPC_FAILED:-0} + 1))
    fi
    echo "${message}" >> "${run_log}"
    if [[ -t 1 ]]; then   # colour only on a terminal, so logs stay greppable
        echo -e "\033[33m${message}\033[0m"
    else
        echo "${message}"
    fi
}

# run_step command log_file status_log: run one step, log its output, report it
run_step() {
    local cmd log_file=$2 status_log=$3 rc
    cmd=$(tr -s ' ' <<< "$1")   # empty optional flags leave double spaces
    cmd=${cmd% }
    mkdir -p "$(dirname "${log_file}")"
    eval "${cmd} > ${log_file} 2>&1"
    rc=$?
    if [[ ${rc} -ne 0 ]]; then   # show why, without flooding the console on success
        echo "---- last lines of ${log_file} ----"
        tail -n 20 "${log_file}"
    fi
    status_check ${rc} "${cmd} > ${log_file} 2>&1" "${status_log}"
    return ${rc}
}
