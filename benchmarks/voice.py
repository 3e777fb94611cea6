"""The measured voice turn, repeated: stage timings and voice-to-voice p50/p90 on this CPU (a script, not a test).

    .venv/bin/python benchmarks/voice.py [--runs 10] [--silence-ms 500]

Runs `lpu.speech.run_turn` ``--runs`` times for each of a few spoken questions,
with the LLM paced as the simulated LPU system and as a hosted API, and prints
for each stage the measured p50 and p90 beside `lpu.voice`'s nominal and range
(same silence timer and first-chunk length). A local run has no network hops
or playout buffer; the model's figures are shown with and without them.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from tqdm import tqdm

from lpu import speech, voice

QUESTIONS = ("What is the tallest mountain in the world?", "How far away is the moon?", "Can you recommend a good book about the sea?")
PROFILES = ("lpu-llama2-70b", "hosted-api")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="turns per question and profile")
    parser.add_argument("--silence-ms", type=float, default=500.0)
    args = parser.parse_args(argv)
    if missing := speech.missing():
        raise SystemExit(f"the voice extra is missing ({missing}); install it with pip install -e '.[voice]'")
    t = time.perf_counter()
    loaded = speech.load()
    print(f"components loaded and warmed up in {time.perf_counter() - t:.2f} s ({', '.join(f'{k} {v:.2f} s' for k, v in loaded.items())})")
    rows, wers = [], []
    jobs = [(p, q, i) for p in PROFILES for q in QUESTIONS for i in range(args.runs)]
    for profile, question, i in tqdm(jobs, desc="turns", unit="turn"):
        llm = voice.llm_timing(profile)
        m = speech.run_turn(question, llm, silence_s=args.silence_ms / 1e3, seed=i)
        side = speech.beside_model(m, llm, silence_s=args.silence_ms / 1e3)
        rows += [dict(profile=profile, **r) for r in side.to_dict("records")]
        wers.append(m.wer)
    df = pd.DataFrame(rows)
    table = df.groupby(["profile", "stage"], sort=False).agg(
        measured_p50_s=("measured_s", lambda x: np.nanquantile(x, 0.5) if x.notna().any() else np.nan),
        measured_p90_s=("measured_s", lambda x: np.nanquantile(x, 0.9) if x.notna().any() else np.nan),
        model_s=("model_s", "median"), model_low_s=("model_low_s", "median"), model_high_s=("model_high_s", "median"))
    print(table.round(3).to_string())
    print(f"\n{len(jobs)} turns; ASR word error rate: mean {np.mean(wers):.1%}, worst {np.max(wers):.1%}. "
          "voice-to-voice 'model_s' includes the network and buffer a local run does not have.")


if __name__ == "__main__":
    main()
