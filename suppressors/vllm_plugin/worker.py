"""Worker extension: methods vLLM mixes into each worker, reachable with ``collective_rpc``.

Model-level layers (forward hooks on decoder layers) live here; for now it reports what it sees,
which proves the extension is loaded into the serving worker.
"""

from __future__ import annotations

from typing import Any


class ObliviateWorkerExtension:
    """Mixed into vLLM's worker class; ``self.model_runner`` is the worker's model runner."""

    model_runner: Any

    def obliviate_model_info(self) -> dict[str, int]:
        model = self.model_runner.get_model()
        config = model.config
        return {"num_hidden_layers": config.num_hidden_layers, "hidden_size": config.hidden_size}
