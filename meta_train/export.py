"""Exports the meta-parameters of a run's latest checkpoint.

``python -m meta_train.export runs/foo --out foo.npz`` writes what
``python -m meta_train`` would have written had it been run with
``--meta-steps`` equal to the checkpoint's step: nothing in a run depends on
its total length, so the manifest records that command.
"""

import argparse
import dataclasses
import os

import l2l
from meta_train import config as config_lib
from meta_train import train as train_lib


def command_for(config: config_lib.TrainConfig) -> str:
  """The ``python -m meta_train`` command line that reproduces ``config``."""
  always = ('family', 'design', 'meta_steps', 'seed')
  flags = []
  for field in dataclasses.fields(config):
    value = getattr(config, field.name)
    if value == field.default and field.name not in always:
      continue
    flag = '--' + field.name.replace('_', '-')
    if field.name == 'family' and ':' in value:
      flag = '--task'
    if isinstance(value, bool):
      flags.append(flag if value else '--no-' + flag[2:])
    else:
      flags.append(f'{flag} {value}')
  return ' '.join(['python -m meta_train'] + flags)


def export(run_dir: str, path: str) -> dict:
  """Saves the checkpoint's meta-parameters to ``path``; returns the manifest."""
  found = train_lib.latest_checkpoint(run_dir)
  if found is None:
    raise l2l.CheckpointError(f'{run_dir}: no checkpoint of a meta_train run')
  checkpoint, manifest, checkpoints = found
  if checkpoints is not None:
    checkpoints.close()
  config = dataclasses.replace(config_lib.TrainConfig(**manifest['config']),
                               meta_steps=manifest['step'])
  state, step, elapsed = train_lib._restore(  # pylint: disable=protected-access
      train_lib.Trainer(config), run_dir, check_config=False)
  metadata = dict(task_family=config.family, meta_steps=step,
                  seed=config.seed, train_config=dataclasses.asdict(config),
                  command=command_for(config), wall_time_s=round(elapsed, 1),
                  exported_from=os.path.abspath(checkpoint))
  l2l.save_meta_params(path, state.meta_params,
                       config={**config.architecture, **config.optimizer_kwargs},
                       **metadata)
  return metadata


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(prog='python -m meta_train.export',
                                   description=__doc__.splitlines()[0])
  parser.add_argument('run_dir', help='a meta_train output directory')
  parser.add_argument('--out', required=True, help='destination .npz')
  args = parser.parse_args(argv)
  metadata = export(args.run_dir, args.out)
  print(f'wrote {args.out} (step {metadata["meta_steps"]}): '
        f'{metadata["command"]}')


if __name__ == '__main__':
  main()
