"""Model call paths traced by aot_build/trace_jit_specs.py: each module's `steps()` lists the public
FlashInfer calls one vLLM stack makes on SM12x, prefill and decode, in forward-pass order."""

WORKLOADS = ("gpt_oss_120b", "qwen3_next_nvfp4")
