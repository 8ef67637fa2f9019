"""What the Python-library backends (transformers, OpenVINO, AutoGPTQ, vLLM, ExLlamaV2, RWKV) share.

Each module maps LocalAI model-YAML keys onto library arguments without importing the library, so the
mapping is tested in the base environment: devices.py picks the torch or OpenVINO device, dtype and
quantization; requests.py turns a request into a token budget and `generate()` arguments;
model_location.py says where the weights are; decoder.py turns streamed token ids into text; generate.py
streams a Hugging Face `generate()` from its worker thread.
"""
