"""Run under torchrun (gloo): calibrate and measure sensitivity, write rank 0's table as JSON.

torchrun --nproc_per_node N tests/workers/sensitivity_ranks.py OUT.json
"""

import json
import sys

import torch

import bevcc
from bevcc.plugins import load_plugins
from bevcc.reference.planted import calibration_batches, planted


def main(out: str) -> None:
    torch.set_num_threads(1)  # the same arithmetic in every process
    torch.distributed.init_process_group("gloo")
    result = bevcc.compile(
        planted(),
        calib=calibration_batches(),
        registry=load_plugins(autoload=False).registry,
        pipeline="fx(qdq_insert,quantizer_unify,sensitivity_disable{top_k=1})",
    )
    record = result.records[-1]
    amax = {
        n: m.amax.tolist()
        for n, m in result.ir.module.named_modules()
        if hasattr(m, "calibrator_name") and m.amax is not None
    }
    if torch.distributed.get_rank() == 0:
        with open(out, "w") as handle:
            json.dump(
                {
                    "table": record.stats["table"],
                    "disabled": record.stats["disabled"],
                    "amax": amax,
                },
                handle,
                sort_keys=True,
            )
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
