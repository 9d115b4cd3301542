#!/usr/bin/env python3
"""Writes the ComfyUI-Manager snapshot fixtures the way the Manager saves them.

ComfyUI-Manager's save_snapshot_with_postfix (glob/manager_core.py) writes the
dict get_current_snapshot returns with json.dump(snapshot, f, indent=4) for a
.json path and yaml.dump({'custom_nodes': snapshot}, f, allow_unicode=True)
for a .yaml path. These are the same calls on hand-made, realistic snapshots
(real node repositories; made-up commits). hostile_snapshot.json is written by
hand. Run from this directory: python3 make_fixtures.py (needs PyYAML).
"""
import json
import yaml

classic = {
    "comfyui": "e00d22ab1f04f8d9f25cb4a70a2d09d9d0f3a6b6",
    "git_custom_nodes": {
        "https://github.com/ltdrdata/ComfyUI-Manager": {"hash": "3e3a8a6b4d9f2c1e7b5a0d8c6f4e2a1b9c7d5e3f", "disabled": False},
        "https://github.com/ltdrdata/ComfyUI-Impact-Pack": {"hash": "9c4fbb7c40f3a1b2d8e6f5a4c3b2a1908f7e6d5c", "disabled": False},
        "https://github.com/rgthree/rgthree-comfy.git": {"hash": "5f2d7e8a1c3b4d6e9f0a2b4c6d8e0f1a3b5c7d9e", "disabled": False},
        "https://github.com/cubiq/ComfyUI_IPAdapter_plus/": {"hash": "b18a0f4e2d6c8a9b1c3d5e7f9a0b2c4d6e8f0a1b", "disabled": False},
        "https://github.com/WASasquatch/was-node-suite-comfyui": {"hash": "0a6f1b9d3e5c7a2b4d6f8e0c1a3b5d7f9e2c4a6b", "disabled": True},
        "https://github.com/kijai/ComfyUI-KJNodes": {"hash": "d4e6f8a0b2c4d6e8f0a2b4c6d8e0f2a4b6c8d0e2", "disabled": False},
    },
    "cnr_custom_nodes": {"comfyui_controlnet_aux": "1.0.7", "comfyui-videohelpersuite": "1.5.2"},
    "file_custom_nodes": [
        {"disabled": False, "filename": "websocket_image_save.py"},
        {"disabled": True, "filename": "my_prompt_tools.py"},
    ],
    # get_installed_pip_packages: `name @ url` lines become {name: url}, the rest {line: ""}.
    "pips": {
        "accelerate==1.2.1": "",
        "aiohttp==3.11.11": "",
        "einops==0.8.0": "",
        "numpy==1.26.4": "",
        "opencv-python-headless==4.10.0.84": "",
        "pillow==11.1.0": "",
        "safetensors==0.5.2": "",
        "segment_anything": "git+https://github.com/facebookresearch/segment-anything.git@dca509fe793f601edb92606367a655c15ac00fdf",
        "-e git+https://github.com/openai/CLIP.git@dcba3cb2e2827b402d2701e7e1c7d9fed8a20ef1#egg=clip": "",
        "torch==2.5.1+cu124": "",
        "torchsde==0.2.6": "",
        "transformers==4.48.0": "",
    },
}

newer = {
    "comfyui": "6d9f3e1b2a4c5d7e8f90a1b2c3d4e5f6a7b8c9d0",
    "git_custom_nodes": {
        "https://github.com/Comfy-Org/ComfyUI-Manager": {"hash": "71d3a3b8e4c2f0a9d8e7c6b5a4f3e2d1c0b9a8f7", "disabled": False},
        "https://github.com/city96/ComfyUI-GGUF": {"hash": "5875c52f59baca3a9372d68c43a3775e21846fe0", "disabled": False},
        "https://github.com/rgthree/rgthree-comfy": {"hash": "5f2d7e8a1c3b4d6e9f0a2b4c6d8e0f1a3b5c7d9e", "disabled": True},
        "https://github.com/pythongosssss/ComfyUI-Custom-Scripts.git": {"hash": "0123456789012345678901234567890123456789", "disabled": False},
    },
    "cnr_custom_nodes": {"comfyui-impact-pack": "8.8.1", "comfyui-kjnodes": "1.0"},
    "file_custom_nodes": [{"disabled": False, "filename": "websocket_image_save.py"}],
    "pips": {
        "diffusers": "git+https://github.com/huggingface/diffusers.git@a1b2c3d4e5f60718293a4b5c6d7e8f9012345678",
        "-e git+https://github.com/example-org/a-rather-long-repository-name-for-editable-installs.git@a1b2c3d4e5f60718293a4b5c6d7e8f9012345678#egg=example_pkg": "",
        "gguf==0.14.0": "",
        "numpy==2.1.3": "",
        "sentencepiece==0.2.0": "",
        "spandrel==0.4.0": "",
        "torch==2.6.0": "",
    },
}

with open("2025-03-14_18-22-05_snapshot.json", "w") as f:
    json.dump(classic, f, indent=4)
with open("2025-06-02_09-41-37_snapshot.yaml", "w") as f:
    yaml.dump({"custom_nodes": newer}, f, allow_unicode=True)
