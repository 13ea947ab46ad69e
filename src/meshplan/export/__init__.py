"""Layer 5: launch configuration for serving engines and a torch DeviceMesh (DESIGN.md section 10).

Targeted versions (flag names checked against each engine's argument parser and docs):
vLLM 0.11 (`vllm serve`, vllm/engine/arg_utils.py; all-to-all backend by the VLLM_ALL2ALL_BACKEND
environment variable), SGLang 0.5 (`python -m sglang.launch_server`, sglang/srt/server_args.py),
TensorRT-LLM 1.0 (`trtllm-serve` with an LLM-API YAML, tensorrt_llm/llmapi/llm_args.py).
"""

from meshplan.export.common import ExportTarget

ENGINE_VERSIONS = {ExportTarget.VLLM: "0.11", ExportTarget.SGLANG: "0.5", ExportTarget.TRTLLM: "1.0",
                   ExportTarget.DEVICEMESH: "torch 2.13"}
