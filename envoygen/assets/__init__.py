"""Files shipped inside the envoygen package and read at run time.

* ``base.Dockerfile``: the recipe of the local base image (identical to the
  repository's top-level ``Dockerfile``; see :mod:`envoygen.base_image`).
* ``envoygen-init.c``: the source of ``envoygen-init``, the base image's PID 1,
  compiled with ``cc -static`` while the base image is prepared.

Both enter the base image's recipe digest, so any change to them rebuilds the
local base image. They are read with :mod:`importlib.resources`, which finds
them in a source checkout, an editable install and a wheel alike.
"""

from __future__ import annotations

from importlib import resources

BASE_DOCKERFILE_NAME = "base.Dockerfile"
INIT_C_NAME = "envoygen-init.c"


def read_text(name: str) -> str:
    """The content of asset ``name``, decoded as UTF-8 with no newline translation."""
    return resources.files(__name__).joinpath(name).read_bytes().decode("utf-8")
