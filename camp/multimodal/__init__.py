"""Multimodal: pictures in chat, serving and fine-tuning — the embedded tiny-vl on CPU, InternVL2 / XComposer2
through LMDeploy on GPU.

    camp.chat("tiny-vl").ask("左边的方块是什么颜色？", image="pic.png")
    camp.finetune("tiny-vl", "data.json")               # LLaVA JSON + images: XTuner's LLaVA pipeline
    camp.serve("tiny-vl")                               # image_url parts over the OpenAI API

Modules: images (loading, checks, limits), scenes (the generated pictures), tiny_vl (the embedded model's build),
messages / chat / backend (image turns in camp.chat), llava_data (dataset checks), xtuner_llava + stage (the
fine-tune), score (held-out accuracy), lmdeploy_vl (GPU: pipeline and api_server command lines), serving (image
checks at the server).
"""
