"""Source text of single-file plugins that tests write into a plugins dir."""

GOOD_PLUGIN = '''
from dataclasses import dataclass

from sg3probe.analyzer import Analyzer, Needs
from sg3probe.hookspecs import hookimpl
from sg3probe.results import AnalysisResult


class Spread(Analyzer):
    name = "spread"
    description = "Per-dimension spread of W."
    needs = Needs(spaces=["w"])

    @dataclass
    class Config:
        top_k: int = 3  # dimensions in the summary

    def analyze(self, samples, ctx, cfg):
        spread = samples["aligned"]["w"].std(axis=0)
        return AnalysisResult(metrics={"max_spread": float(spread.max())}, summary="ok")


@hookimpl
def register_analyzers(register):
    register(Spread)
'''
