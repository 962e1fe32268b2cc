"""The evaluation's reports written to every logger of a run that can hold them.

Lightning's Logger API carries scalars (`log_metrics`) and hyperparameters (`log_hyperparams`) and nothing
else: figures and text need each logger's own client, so they are written here, for the two loggers that
hold them (TensorBoard's writer, MLflow's client; MLflow keeps them as artifacts of the run). Loggers that
hold only scalars (CSV) get the scalars, and the run says once what they leave out.
"""

from lightning.pytorch.loggers import Logger, MLFlowLogger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_warn
from matplotlib import pyplot as plt

from bert_imdb.reporting.evaluation import add_pr_curve
from bert_imdb.reporting.hparams import log_hparams

ONLY_IN_RICH_LOGGERS = "the confusion matrix, PR curve, reliability diagram and tables"


def holds_reports(logger: Logger) -> bool:
    return isinstance(logger, (TensorBoardLogger, MLFlowLogger))


def say_what_is_left_out(loggers: list[Logger]) -> None:
    """One warning naming the loggers that hold scalars only, where the run has any."""
    scalar_only = sorted({type(logger).__name__ for logger in loggers if not holds_reports(logger)})
    rich = sorted({type(logger).__name__ for logger in loggers if holds_reports(logger)})
    if scalar_only:
        where = (
            f"they are in {' and '.join(rich)}" if rich else "add TensorBoardLogger or MLFlowLogger for them"
        )
        rank_zero_warn(f"{', '.join(scalar_only)} holds scalars only, not {ONLY_IN_RICH_LOGGERS}: {where}")


class Reports:
    """Writes an evaluation's scalars, figures and text to each of `loggers`, at `step`."""

    def __init__(self, loggers: list[Logger], step: int):
        self.loggers, self.step = loggers, step

    def scalars(self, values: dict[str, float]) -> None:
        for logger in self.loggers:
            logger.log_metrics(values, self.step)

    def figure(self, tag: str, figure) -> None:
        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_figure(tag, figure, self.step, close=False)
            elif isinstance(logger, MLFlowLogger):
                logger.experiment.log_figure(logger.run_id, figure, f"{tag}/step{self.step}.png")
        plt.close(figure)

    def text(self, tag: str, text: str) -> None:
        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_text(tag, text, self.step)
            elif isinstance(logger, MLFlowLogger):
                logger.experiment.log_text(logger.run_id, text, f"{tag}/step{self.step}.md")

    def pr_curve(self, tag: str, counts) -> None:
        """TensorBoard's PR CURVES tab: MLflow has the figure of the curve."""
        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                add_pr_curve(logger.experiment, tag, counts, self.step)

    def final_scores(self, params: dict, scores: dict[str, float]) -> None:
        """The run's final scores; in TensorBoard's HPARAMS tab beside its hyperparameters (the other
        loggers got those from Lightning when the run started, and MLflow refuses a parameter logged twice)."""
        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                log_hparams(logger.experiment, params, scores, self.step)
            else:
                logger.log_metrics(scores, self.step)
