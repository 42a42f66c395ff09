#!/usr/bin/env bash
# TIPC basic chain for paddle-pssl:
#   PSSL pre-train (1001 classes, lite label store)
#   -> fine-tune on the lite target set, loading the pre-trained checkpoint by shape
#   -> eval -> export -> Paddle Inference on every (mkldnn, threads, batch) setting.
# Usage (from anywhere; paths in the txt are relative to the repository root):
#   bash test_tipc/test_train_inference_python.sh test_tipc/configs/<model>/train_infer_python.txt lite_train_lite_infer
# Modes: lite_train_lite_infer, lite_train_whole_infer, whole_infer (see README.md).
# Python: $PYTHON if set, else the txt's "python:" value, else python.
# Prints one "Run successfully/failed with command - <cmd>!" line per step,
# appends them to test_tipc/output/<model>/results_python.log, and exits 1 if
# any step failed.
set -o nounset   # no errexit: a failed step is reported and the chain goes on

if [[ $# -lt 2 ]]; then
    echo "usage: bash test_tipc/test_train_inference_python.sh <train_infer_python.txt> <mode>" >&2
    exit 2
fi
FILENAME=$(realpath "$1")
MODE=$2
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${ROOT}"
source test_tipc/common_func.sh

case "${MODE}" in
    lite_train_lite_infer|lite_train_whole_infer|whole_infer) ;;
    *) echo "mode ${MODE} is not supported (see test_tipc/README.md)" >&2; exit 2 ;;
esac

# Lines are read by position, as in PaddleSeg's TIPC (0-based line numbers).
mapfile -t lines < "${FILENAME}"

# train_params
model_name=$(func_parser_value "${lines[1]}")
python=${PYTHON:-$(func_parser_value "${lines[2]}")}
python=${python:-python}
gpu_list=$(func_parser_value "${lines[3]}")
train_use_gpu_key=$(func_parser_key "${lines[4]}")
train_use_gpu_value=$(func_parser_value "${lines[4]}")
autocast_key=$(func_parser_key "${lines[5]}")
autocast_list=$(func_parser_value "${lines[5]}")
epoch_key=$(func_parser_key "${lines[6]}")
epoch_num=$(func_parser_params "${lines[6]}")
save_model_key=$(func_parser_key "${lines[7]}")
train_batch_key=$(func_parser_key "${lines[8]}")
train_batch_value=$(func_parser_params "${lines[8]}")
pretrain_model_key=$(func_parser_key "${lines[9]}")
train_model_name=$(func_parser_value "${lines[10]}")
train_infer_img_dir=$(func_parser_value "${lines[11]}")
train_param_key1=$(func_parser_key "${lines[12]}")
train_param_value1=$(func_parser_value "${lines[12]}")

trainer_list=$(func_parser_value "${lines[14]}")
trainer_norm=$(func_parser_key "${lines[15]}")
norm_trainer=$(func_parser_value "${lines[15]}")
# lines 16-18 (pact/fpgm/distill) are null: no PaddleSlim here
pretrain_key=$(func_parser_key "${lines[19]}")      # the PSSL pre-train step
pretrain_trainer=$(func_parser_value "${lines[19]}")

# eval_params
eval_py=$(func_parser_value "${lines[23]}")
eval_key1=$(func_parser_key "${lines[24]}")
eval_value1=$(func_parser_value "${lines[24]}")

# export_params
save_infer_key=$(func_parser_key "${lines[27]}")
export_weight_key=$(func_parser_key "${lines[28]}")
norm_export=$(func_parser_value "${lines[29]}")
pretrain_export=$(func_parser_value "${lines[33]}")

# infer_params
infer_model_list=$(func_parser_value "${lines[36]}")
infer_export_list=$(func_parser_value "${lines[37]}")
inference_py=$(func_parser_value "${lines[39]}")
use_gpu_key=$(func_parser_key "${lines[40]}")
use_gpu_list=$(func_parser_value "${lines[40]}")
use_mkldnn_key=$(func_parser_key "${lines[41]}")
use_mkldnn_list=$(func_parser_value "${lines[41]}")
cpu_threads_key=$(func_parser_key "${lines[42]}")
cpu_threads_list=$(func_parser_value "${lines[42]}")
batch_size_key=$(func_parser_key "${lines[43]}")
batch_size_list=$(func_parser_value "${lines[43]}")
use_trt_key=$(func_parser_key "${lines[44]}")
use_trt_list=$(func_parser_value "${lines[44]}")
precision_key=$(func_parser_key "${lines[45]}")
precision_list=$(func_parser_value "${lines[45]}")
infer_model_key=$(func_parser_key "${lines[46]}")
image_dir_key=$(func_parser_key "${lines[47]}")
infer_img_dir=$(func_parser_value "${lines[47]}")
save_log_key=$(func_parser_key "${lines[48]}")
save_log_value=$(func_parser_value "${lines[48]}")
benchmark_key=$(func_parser_key "${lines[49]}")
benchmark_value=$(func_parser_value "${lines[49]}")
infer_save_key=$(func_parser_key "${lines[50]}")
infer_key2=$(func_parser_key "${lines[51]}")
infer_value2=$(func_parser_value "${lines[51]}")

LOG_PATH="test_tipc/output/${model_name}"
mkdir -p "${LOG_PATH}"
status_log="${LOG_PATH}/results_python.log"
echo "------------------------ ${MODE} ------------------------" >> "${status_log}"
TIPC_FAILED=0

# func_inference model_dir log_dir image_path: one run per CPU/GPU setting
# The inference parameters every device shares.
func_infer_params() {
    local model_dir=$1 batch_size=$2 img_dir=$3 precision=$4 save_dir=$5
    echo "$(func_set_params "${infer_model_key}" "${model_dir}") $(func_set_params "${batch_size_key}" "${batch_size}")" \
         "$(func_set_params "${image_dir_key}" "${img_dir}") $(func_set_params "${benchmark_key}" "${benchmark_value}")" \
         "$(func_set_params "${precision_key}" "${precision}") $(func_set_params "${infer_save_key}" "${save_dir}")"
}

func_inference() {
    local model_dir=$1 log_dir=$2 img_dir=$3
    local device use_mkldnn threads batch_size use_trt precision tag cmd
    local IFS='|'
    for device in ${use_gpu_list}; do
        if [[ ${device} == "cpu" || ${device} == "False" ]]; then
            for use_mkldnn in ${use_mkldnn_list}; do
                for threads in ${cpu_threads_list}; do
                    for batch_size in ${batch_size_list}; do
                        for precision in ${precision_list}; do
                            [[ ${precision} != "fp32" ]] && continue   # CPU runs fp32 only
                            tag="python_infer_cpu_usemkldnn_${use_mkldnn}_threads_${threads}_precision_${precision}_batchsize_${batch_size}"
                            cmd="${python} ${inference_py} ${use_gpu_key}=cpu ${use_mkldnn_key}=${use_mkldnn}"
                            cmd+=" $(func_set_params "${cpu_threads_key}" "${threads}")"
                            cmd+=" $(func_infer_params "${model_dir}" "${batch_size}" "${img_dir}" "${precision}" "${log_dir}/${tag}_results")"
                            cmd+=" $(func_set_params "${save_log_key}" "${save_log_value}")"
                            cmd+=" $(func_set_params "${infer_key2}" "${infer_value2}")"
                            IFS=' ' run_step "${cmd}" "${log_dir}/${tag}.log" "${status_log}"
                        done
                    done
                done
            done
        elif [[ ${device} == "gpu" || ${device} == "True" ]]; then
            for use_trt in ${use_trt_list}; do
                for precision in ${precision_list}; do
                    [[ ${use_trt} == "False" && ${precision} != "fp32" ]] && continue
                    for batch_size in ${batch_size_list}; do
                        tag="python_infer_gpu_usetrt_${use_trt}_precision_${precision}_batchsize_${batch_size}"
                        cmd="${python} ${inference_py} ${use_gpu_key}=gpu"
                        cmd+=" $(func_set_params "${use_trt_key}" "${use_trt}")"
                        cmd+=" $(func_infer_params "${model_dir}" "${batch_size}" "${img_dir}" "${precision}" "${log_dir}/${tag}_results")"
                        IFS=' ' run_step "${cmd}" "${log_dir}/${tag}.log" "${status_log}"
                    done
                done
            done
        else
            echo "inference device ${device} is not supported (cpu or gpu)"
        fi
    done
}

if [[ ${MODE} == "whole_infer" ]]; then
    # export + inference only, from the checkpoints named by infer_model
    IFS='|' read -r -a infer_models <<< "${infer_model_list}"
    IFS='|' read -r -a infer_exports <<< "${infer_export_list}"
    for i in "${!infer_models[@]}"; do
        infer_model=${infer_models[$i]}
        if [[ ${infer_model} == "null" || ! -f ${infer_model} ]]; then
            echo "whole_infer: ${infer_model}: no such model.pdparams (run lite_train_lite_infer first, or set infer_model)"
            status_check 1 "whole_infer needs ${infer_model}" "${status_log}"
            continue
        fi
        save_infer_dir=$(dirname "${infer_model}")
        export_cmd=${infer_exports[$i]:-null}
        if [[ ${export_cmd} != "null" ]]; then
            cmd="${python} ${export_cmd} $(func_set_params "${export_weight_key}" "${infer_model}")"
            cmd+=" $(func_set_params "${save_infer_key}" "${save_infer_dir}")"
            run_step "${cmd}" "${LOG_PATH}/whole_infer_export.log" "${status_log}"
        fi
        func_inference "${save_infer_dir}" "${LOG_PATH}" "${infer_img_dir}"
    done
else
    IFS='|' read -r -a gpus <<< "${gpu_list}"
    IFS='|' read -r -a devices <<< "${train_use_gpu_value}"
    IFS='|' read -r -a autocasts <<< "${autocast_list}"
    IFS='|' read -r -a trainers <<< "${trainer_list}"
    for gi in "${!gpus[@]}"; do
        gpu=${gpus[$gi]}
        set_use_gpu=$(func_set_params "${train_use_gpu_key}" "${devices[$gi]:-null}")
        launch=""
        if [[ ${gpu} == "-1" ]]; then       # CPU
            unset CUDA_VISIBLE_DEVICES
        elif [[ ${gpu} != *,* ]]; then       # one GPU
            export CUDA_VISIBLE_DEVICES=${gpu}
        else                                 # several GPUs, one process each
            launch="-m paddle.distributed.launch --gpus=${gpu}"
        fi
        for autocast in "${autocasts[@]}"; do
            pretrained_ckpt=""
            for trainer in "${trainers[@]}"; do
                if [[ ${trainer} == "${pretrain_key}" ]]; then
                    run_train=${pretrain_trainer}; run_export=${pretrain_export}
                elif [[ ${trainer} == "${trainer_norm}" ]]; then
                    run_train=${norm_trainer}; run_export=${norm_export}
                else
                    echo "trainer ${trainer} is not supported (${trainer_norm} or ${pretrain_key})"
                    continue
                fi
                [[ ${run_train} == "null" ]] && continue
                save_log="${LOG_PATH}/${trainer}_gpus_${gpu}_autocast_${autocast}"
                cmd="${python} ${launch} ${run_train} ${set_use_gpu}"
                cmd+=" $(func_set_params "${save_model_key}" "${save_log}")"
                cmd+=" $(func_set_params "${epoch_key}" "${epoch_num}")"
                cmd+=" $(func_set_params "${autocast_key}" "${autocast}")"
                cmd+=" $(func_set_params "${train_batch_key}" "${train_batch_value}")"
                cmd+=" $(func_set_params "${train_param_key1}" "${train_param_value1}")"
                if [[ ${trainer} != "${pretrain_key}" && -n ${pretrained_ckpt} ]]; then
                    # fine-tune from the pre-train: PaddleSeg loads it by shape,
                    # skipping the 1001-class output layers
                    cmd+=" --opts model.pretrained=${pretrained_ckpt}"
                fi
                rm -rf "${save_log}"   # a stale checkpoint must not pass for this run's
                run_step "${cmd}" "${save_log}/train.log" "${status_log}"

                # without an evaluation there is no best_model: use the last iteration
                model_name_for_run=${train_model_name}
                if [[ ! -f ${save_log}/${model_name_for_run} ]]; then
                    model_name_for_run="iter_${epoch_num}/model.pdparams"
                fi
                if [[ ${trainer} == "${pretrain_key}" ]]; then
                    pretrained_ckpt="${save_log}/iter_${epoch_num}/model.pdparams"
                    continue   # the 1001-class model is only a starting point
                fi

                if [[ ${eval_py} != "null" ]]; then
                    cmd="${python} ${eval_py} $(func_set_params "${pretrain_model_key}" "${save_log}/${model_name_for_run}")"
                    cmd+=" ${set_use_gpu} $(func_set_params "${eval_key1}" "${eval_value1}")"
                    run_step "${cmd}" "${save_log}/eval.log" "${status_log}"
                fi
                if [[ ${run_export} != "null" ]]; then
                    cmd="${python} ${run_export} $(func_set_params "${export_weight_key}" "${save_log}/${model_name_for_run}")"
                    cmd+=" $(func_set_params "${save_infer_key}" "${save_log}")"
                    run_step "${cmd}" "${save_log}/export.log" "${status_log}"
                    func_inference "${save_log}" "${LOG_PATH}" "${train_infer_img_dir}"
                fi
            done
        done
    done
fi

if [[ ${TIPC_FAILED} -ne 0 ]]; then
    echo "${TIPC_FAILED} step(s) failed; logs in ${LOG_PATH}"
    exit 1
fi
echo "all steps passed; logs in ${LOG_PATH}"
