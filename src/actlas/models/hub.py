"""Downloaded weights: where each library keeps them, fetching them without a word on stdout, and one line
when a download cannot happen.

- torchvision: ``torch.hub.get_dir()/checkpoints/<the file name of the weights URL>``
  (``$TORCH_HOME/hub/checkpoints``, by default ``~/.cache/torch/hub/checkpoints``). A file put there
  loads with no network: ``torchvision:NAME:WEIGHTS`` looks there first.
- timm and Hugging Face transformers: the Hugging Face Hub cache (``$HF_HUB_CACHE``, else
  ``$HF_HOME/hub``, by default ``~/.cache/huggingface/hub``), filled by ``hf download REPO_ID`` where
  a network exists; ``HF_HUB_OFFLINE=1`` then reads it without trying the network.

torch prints ``Downloading: ...`` on stdout, which would break ``actlas layers --json``: every
download here writes to stderr only.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from urllib.parse import urlparse

from ..errors import ModelError
from ..text import error_line


def torch_checkpoint(url: str) -> Path:
    """Where torch.hub keeps the file of ``url``: ``torch.hub.get_dir()/checkpoints/<its file name>``."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def fetch_torchvision(weights) -> Path:
    """The file of a torchvision weights enum member, downloaded into the torch.hub cache when it is not there.

    Raises ``ModelError`` in one line naming the file and where to put it when the download fails.
    """
    import torch

    path = torch_checkpoint(weights.url)
    if path.is_file():
        return path
    name = f"{type(weights).__name__}.{weights.name}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        match = torch.hub.HASH_REGEX.search(path.name)
        with contextlib.redirect_stdout(sys.stderr):
            torch.hub.download_url_to_file(weights.url, str(path), match.group(1) if match else None, progress=False)
    except Exception as err:  # noqa: BLE001 - any failed download (no network, refused, a bad hash) is one line
        raise ModelError(
            f"cannot download torchvision's {name} weights ({error_line(err, 100)}): fetch {weights.url} where "
            f"a network exists and put the file at {path} (torch.hub.get_dir()/checkpoints; TORCH_HOME moves it)"
        ) from None
    # said after, not before: a failed download is then exactly one line
    print(f"actlas: downloaded torchvision's {name} to {path}", file=sys.stderr)
    return path


def hf_cache() -> str:
    """The Hugging Face Hub cache folder (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``)."""
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except ImportError:
        home = os.environ.get("HF_HOME", os.path.join(os.path.expanduser("~"), ".cache", "huggingface"))
        return os.environ.get("HF_HUB_CACHE", os.path.join(home, "hub"))


def hf_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` asks for the cache only."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_error(what: str, repo: str, err: BaseException) -> ModelError:
    """One line for weights or files of Hugging Face Hub repository ``repo`` that could not be read."""
    return ModelError(
        f"cannot load {what} ({error_line(err, 90)}): fetch them where a network exists with `hf download {repo}` "
        f"into the Hugging Face cache ({hf_cache()}: $HF_HUB_CACHE, or $HF_HOME/hub), then run with HF_HUB_OFFLINE=1"
    )


@contextlib.contextmanager
def quiet_stdout():
    """Send whatever a library prints on stdout (download notices) to stderr instead."""
    with contextlib.redirect_stdout(sys.stderr):
        yield
