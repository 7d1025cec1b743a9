"""Deployment: an OpenAI-compatible endpoint on every machine — LMDeploy on GPU, `transformers serve` on CPU
(engines/, one file each) — the endpoint and its client (endpoint, client), the serving memory plan (memory), AWQ
quantization (quantize) and the throughput bench (bench)."""

from camp.serving.awq import calibration_text, quantize
from camp.serving.endpoint import Endpoint, endpoints, parse_endpoint_url
from camp.serving.stage import serve

__all__ = ["Endpoint", "endpoints", "parse_endpoint_url", "serve", "quantize", "calibration_text"]
