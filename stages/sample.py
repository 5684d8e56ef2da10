"""DVC stage `sample`: the demo's labelled clips, generated offline from bundled face photos."""

from __future__ import annotations

from deepfake.params import load_params
from deepfake.sample import SampleError, SampleSpec, make_sample


def main() -> None:
    params = load_params()["sample"]
    spec = SampleSpec(
        clips_per_face=params["clips_per_face"], fakes_per_real=params["fakes_per_real"],
        frames=params["frames"], fps=params["fps"], width=params["width"], height=params["height"],
        seed=params["seed"],
    )
    try:
        make_sample(params["out"], faces=params["faces"] or None, spec=spec)
    except SampleError as error:
        raise SystemExit(f"sample: {error}") from None


if __name__ == "__main__":
    main()
