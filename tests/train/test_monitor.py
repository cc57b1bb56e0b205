"""Run reporting: log.csv from the history; optional packages absent or present."""

from __future__ import annotations

import csv
import logging

from bsafusion.train.monitor import RunMonitor


def test_log_csv_union_of_columns_and_fallback_logging(tmp_path, caplog):
    monitor = RunMonitor(tmp_path, total_epochs=3, progress=False)
    history = [{"epoch": 1, "train_total": 2.5},
               {"epoch": 2, "train_total": 2.0, "val_epe_mean": 1.25, "val_ssim": 0.5}]
    with caplog.at_level(logging.INFO, logger="bsafusion.train.monitor"):
        for row in history:
            monitor.epoch_done(row)
    assert "val EPE 1.250 px" in caplog.text and caplog.text.count("epoch") == 1
    monitor.write_history(history)
    monitor.plot(history)  # writes loss.png when matplotlib is installed, else nothing
    monitor.close()
    with open(tmp_path / "log.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["epoch", "train_total", "val_epe_mean", "val_ssim"]
    assert rows[0]["val_epe_mean"] == "" and rows[1]["val_epe_mean"] == "1.25"
