"""Optuna samplers adapted to dlforge's ask-and-tell workers."""

from optuna.samplers import GridSampler


class Grid(GridSampler):
    """GridSampler for workers that stop at the grid's size themselves: the stock
    one calls ``study.stop()`` when the grid is done, which only works inside
    ``study.optimize``."""

    def after_trial(self, study, trial, state, values) -> None:
        pass
