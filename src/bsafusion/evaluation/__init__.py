"""``bsafusion evaluate``: the test-set format, the methods, scoring, the report and the run.

Modules, each importing only those listed before it: ``testset`` (writer and reader of the
deformed test set), ``baselines``, ``methods`` (the :class:`~bsafusion.evaluation.methods.Method`
interface; the network through the Fuser; baselines; external outputs), ``scoring``,
``report``, ``run`` (:func:`evaluate`).
"""

from bsafusion.evaluation.methods import Method
from bsafusion.evaluation.run import DEFAULT_METHODS, METHODS, EvalConfig, EvalResult, evaluate
from bsafusion.evaluation.scoring import load_landmarks, score
from bsafusion.evaluation.testset import FOREGROUND, Testset, load_testset, make_testset

__all__ = [
    "DEFAULT_METHODS", "FOREGROUND", "METHODS", "EvalConfig", "EvalResult", "Method", "Testset",
    "evaluate", "load_landmarks", "load_testset", "make_testset", "score",
]
