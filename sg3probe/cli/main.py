"""Entry point of the `sg3probe` command: the click group, error handling and command registry."""
from __future__ import annotations

import os
import signal
import sys
import threading

import click

from sg3probe.errors import Sg3probeError


EXIT_INTERRUPTED = 130  # what a shell reports for a process ended by SIGINT (128 + 2)
EXIT_TERMINATED = 143  # ... and by SIGTERM (128 + 15)


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's preemption, `kill`), raised where Ctrl-C would be, so that a run stops the same
    clean way: marked interrupted, finished shards and steps kept."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


class _Group(click.Group):
    """A click group that turns our errors, click's usage errors and Ctrl-C into one line on stderr
    and a non-zero exit."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:  # the caller handles click's exceptions itself
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as error:  # `sg3probe` alone: the help, as click shows it
            error.show()
            sys.exit(error.exit_code)
        except click.UsageError as error:  # a missing argument, an unknown option, a bad value
            where = f"; see `{error.ctx.command_path} -h`" if error.ctx is not None else ""
            click.echo(f"error: {error.format_message().rstrip('.')}{where}", err=True)
            sys.exit(error.exit_code)
        except click.ClickException as error:
            click.echo(f"error: {error.format_message()}", err=True)
            sys.exit(error.exit_code)
        except click.exceptions.Abort as error:  # Ctrl-C or SIGTERM (click turns KeyboardInterrupt into Abort)
            terminated = isinstance(error.__cause__, Terminated)
            click.echo(f"error: {'terminated (SIGTERM)' if terminated else 'interrupted'}; what was written so far is "
                       "kept (run the same `sg3probe run` or `sg3probe sample` again to resume)", err=True)
            sys.exit(EXIT_TERMINATED if terminated else EXIT_INTERRUPTED)
        sys.exit(code if isinstance(code, int) else 0)  # an explicit ctx.exit(n), or 0

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except Sg3probeError as error:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {error}", err=True)
            sys.exit(2)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort, KeyboardInterrupt):
            raise
        except BrokenPipeError:  # the reader went away (`sg3probe analyzers | head`): not an error of ours
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
            sys.exit(141)  # what a process killed by SIGPIPE returns in a shell
        except OSError as error:  # a path we cannot read or write, a full disk: the user's to fix
            if ctx.obj and ctx.obj.get("debug"):
                raise
            what = f"{error.filename}: {error.strerror}" if error.filename and error.strerror else str(error)
            click.echo(f"error: {what}; check the path, its permissions and the free disk space", err=True)
            sys.exit(1)
        except Exception as error:  # a bug, or a failure we did not foresee: still one line
            if ctx.obj and ctx.obj.get("debug"):
                raise
            message = " ".join(str(error).split()) or type(error).__name__
            click.echo(f"error: {type(error).__name__}: {message} (run `sg3probe --debug ...` for the traceback "
                       "and please report it)", err=True)
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.version_option(package_name="sg3probe")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """sg3probe: analyse and edit the latent spaces of StyleGAN3 generators."""
    from sg3probe.runtime import apply_threads, tune_malloc

    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    tune_malloc()
    if threading.current_thread() is threading.main_thread():  # signal handlers can only be set there
        signal.signal(signal.SIGTERM, _raise_terminated)
    if ctx.invoked_subcommand not in (None, "plugins", "analyzers", "scorers", "models"):
        apply_threads()  # commands may set their own (--threads, --set threads=N)


def _register_commands() -> None:
    from sg3probe.cli import edit_commands, model_commands, plugin_commands, run_commands, toy
    from sg3probe.plugin_manager import get_plugin_manager

    for command in model_commands.COMMANDS + run_commands.COMMANDS + plugin_commands.COMMANDS + edit_commands.COMMANDS:
        cli.add_command(command)
    cli.add_command(toy.toy)
    get_plugin_manager().add_commands(cli)  # plugins' register_commands hook


_register_commands()
