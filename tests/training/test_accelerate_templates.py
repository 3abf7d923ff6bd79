"""The shipped accelerate configs (templates/accelerate/) parse as `accelerate launch` reads them.

No GPU here, so only what the launcher makes of them is checked, not what they save in memory.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DistributedType

TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "accelerate"


def _launch_args(config: Path, processes: int = 2):
    args = launch_command_parser().parse_args(["--config_file", str(config), "--num_processes", str(processes),
                                               "-m", "dbooth", "train"])
    return _validate_launch_command(args)[0]


def test_fsdp_config_gives_the_launcher_full_sharding_by_transformer_block():
    from accelerate.utils.launch import prepare_multi_gpu_env

    config = load_config_from_file(str(TEMPLATES / "fsdp.yaml"))
    assert config.distributed_type == DistributedType.FSDP
    args = _launch_args(TEMPLATES / "fsdp.yaml")
    assert args.use_fsdp and args.num_processes == 2  # --processes overrides the file's count
    env = prepare_multi_gpu_env(args)
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_SHARDING_STRATEGY"] == "FULL_SHARD"
    assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP" and env["FSDP_USE_ORIG_PARAMS"] == "true"
    from dbooth.families.tiny import tiny_pipeline

    names = {type(m).__name__ for m in tiny_pipeline().unet.modules()}
    assert env["FSDP_TRANSFORMER_CLS_TO_WRAP"] in names  # the wrap policy finds blocks to shard


def test_zero2_config_is_deepspeed_stage_2():
    config = load_config_from_file(str(TEMPLATES / "zero2.yaml"))
    assert config.distributed_type == DistributedType.DEEPSPEED
    assert config.deepspeed_config["zero_stage"] == 2
    args = _launch_args(TEMPLATES / "zero2.yaml", processes=4)
    assert args.use_deepspeed and args.num_processes == 4 and args.zero_stage == 2


@pytest.mark.parametrize("name", ["zero2.yaml", "fsdp.yaml"])
def test_templates_are_for_one_machine_in_bf16(name):
    """bf16, the precision SDXL trains in (the files say to keep train.mixed_precision the same)."""
    config = load_config_from_file(str(TEMPLATES / name))
    assert config.mixed_precision == "bf16" and config.num_machines == 1 and not config.use_cpu
