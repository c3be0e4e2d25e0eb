"""argparse with the project's help layout and message rules (one line, exit 2, "did you mean")."""
from __future__ import annotations

import argparse
import textwrap

# deface's options (its README) and what they are here: its users type them from habit.
DEFACE_FLAGS = {
    "--thresh": "--threshold (-t)",
    "--replacewith": "-m METHOD (blur, -m pixelate for mosaic, -m blackout for solid, -m overlay for img)",
    "--replaceimg": "-m overlay -p image=FILE",
    "--mosaicsize": "-m pixelate -p block=N",
    "--keep-audio": "nothing: audio is kept by default (--no-audio drops it)",
    "--scale": "--max-size N (the longer side to detect at)",
    "--boxes": "--shape box",
    "--draw-scores": "-m outline",
    "--disable-progress-output": "--quiet (-q)",
    "--ffmpeg-config": "--codec, --crf, --preset",
    "--execution-provider": "nothing: detection runs on the CPU with onnxruntime",
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help that fits a screen: "-m, --method METHOD" once (argparse repeats the metavar per spelling),
    "usage: faceveil anonymize [options] INPUT [INPUT ...]" instead of every option again, and at most
    100 columns."""

    def __init__(self, prog, indent_increment=2, max_help_position=26, width=None):
        import shutil

        width = width or max(60, min(100, shutil.get_terminal_size().columns - 2))
        super().__init__(prog, indent_increment, max_help_position, width)

    def _format_action_invocation(self, action):
        if not action.option_strings:
            return super()._format_action_invocation(action)
        names = ", ".join(sorted(action.option_strings, key=len))
        if action.nargs == 0:
            return names
        return f"{names} {self._format_args(action, self._get_default_metavar_for_optional(action))}"

    def _fill_text(self, text, width, indent):
        # Descriptions and epilogs keep their own line breaks (examples line up) where they fit; a paragraph of
        # prose with a line wider than the screen is wrapped as a whole. An example command (an indented line
        # starting "faceveil ", and its backslash continuations) too wide for the screen is wrapped as a shell
        # would read it: a backslash at each break, its "# comment" on a line of its own after it.
        lines, para, command = [], [], False

        def flush():
            if any(len(indent + ln) > width for ln in para):
                lines.append(textwrap.fill(" ".join(para), width, initial_indent=indent, subsequent_indent=indent))
            else:
                lines.extend(indent + ln for ln in para)
            para.clear()

        for line in text.splitlines():
            command = command or line[:1] == " " and line.lstrip().startswith("faceveil ")
            if line.strip() and not command and line[:1] != " ":
                para.append(line)
                continue
            flush()
            if len(indent + line) <= width:
                lines.append(indent + line)
            elif command:
                lines += _wrap_command(line, width, indent)
            else:
                lines.append(textwrap.fill(line, width, initial_indent=indent, subsequent_indent=indent))
            command = command and line.endswith("\\")
        flush()
        return "\n".join(lines)

    def add_argument(self, action):
        super().add_argument(action)
        if isinstance(action, argparse._SubParsersAction):  # argparse undercounts the indented command names
            self._action_max_length += 4

    def _format_usage(self, usage, actions, groups, prefix):
        if usage is not None:
            return super()._format_usage(usage, actions, groups, prefix)
        shown = [a for a in actions if not a.option_strings or a.required]
        prog = self._prog
        if len(shown) < len(actions):
            self._prog = f"{prog} [options]"  # wrapped with the rest when the line is too long
        try:
            return super()._format_usage(usage, shown, groups, prefix)
        finally:
            self._prog = prog


def _wrap_command(line: str, width: int, indent: str) -> list[str]:
    """An example command line wrapped so that it still runs when pasted (see HelpFormatter._fill_text)."""
    code, _, comment = line.partition(" # ")
    lead = indent + " " * (len(code) - len(code.lstrip()))
    body = code.strip()
    more = body.endswith("\\")  # it continues on the next line already
    parts = textwrap.wrap(body.removesuffix("\\").rstrip(), width - 2, initial_indent=lead,
                          subsequent_indent=lead + "    ", break_long_words=False, break_on_hyphens=False)
    out = [p + " \\" for p in parts[:-1]] + [parts[-1] + (" \\" if more else "")]
    return out + ([f"{lead}# {comment}"] if comment else [])


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's message rules: one line, exit 2, "see --help", and "did you mean"
    for close option names and deface's spellings (argparse < 3.14 prints the whole usage block and
    suggests nothing; 3.14's suggest_on_error covers choices only)."""

    def __init__(self, *args, **kwargs):
        if kwargs.get("formatter_class") in (None, argparse.HelpFormatter, argparse.RawDescriptionHelpFormatter):
            kwargs["formatter_class"] = HelpFormatter  # every command's help, wherever it is registered
        super().__init__(*args, **kwargs)

    def parse_args(self, args=None, namespace=None):
        import sys

        args = list(sys.argv[1:] if args is None else args)
        self._refuse_dash_named_paths(args)
        ns, extras = self.parse_known_args(args, namespace)
        if extras:  # collected across subcommands: name them against the subcommand that was chosen
            leaf = self._leaf(ns)
            flags = [a for a in extras if a.startswith("-") and len(a) > 1]
            if flags:
                leaf.error(f"unknown option {flags[0].split('=', 1)[0]}" + leaf._suggest(flags[0]))
            leaf.error(f"unexpected argument{'s' if len(extras) > 1 else ''}: {' '.join(extras)}")
        return ns

    def _refuse_dash_named_paths(self, args: list[str]) -> None:
        """A file or folder whose name starts with '-' (`faceveil anonymize -dash.jpg`), before any `--`: argparse
        reads it as options (-d ash.jpg: the detector "ash.jpg") and said "the following arguments are required:
        INPUT". One line naming it and the two spellings that work (./-dash.jpg, or after --), as rm's hint does."""
        import os

        options = {o for p in self._parsers() for a in p._actions for o in a.option_strings}
        for token in args:
            if token == "--":
                return
            if len(token) < 2 or token[0] != "-" or token in options or token.split("=", 1)[0] in options:
                continue
            try:
                there = os.path.lexists(token)
            except (OSError, ValueError):  # a name too long or with a NUL: an option's value, or argparse's to say
                there = False
            if there:
                command = args[0] if args and args[0] in self._commands() else ""
                example = f" (faceveil anonymize -o OUT -- {token})" if command == "anonymize" else ""
                what = "folder" if os.path.isdir(token) else "file"
                self.exit(2, f"faceveil: error: {command + ': ' if command else ''}{token}: a {what} name starting "
                             f"with '-' reads as options; write ./{token}, or put it after --{example}\n")

    def _parsers(self):
        yield self
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    if isinstance(sub, ArgumentParser):
                        yield from sub._parsers()

    def _commands(self) -> set:
        return {name for a in self._actions if isinstance(a, argparse._SubParsersAction) for name in a.choices}

    def _leaf(self, ns) -> "ArgumentParser":
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                chosen = action.choices.get(getattr(ns, action.dest, None) or "")
                if isinstance(chosen, ArgumentParser):
                    return chosen._leaf(ns)
        return self

    def _suggest(self, flag: str) -> str:
        import difflib

        flag = flag.split("=", 1)[0]
        if flag in DEFACE_FLAGS:
            return f" (deface's {flag}? here: {DEFACE_FLAGS[flag]})"
        known = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
        close = difflib.get_close_matches(flag, known, n=1, cutoff=0.7)
        return f"; did you mean {close[0]}?" if close else ""

    def error(self, message: str):
        import difflib

        message = message.replace("\n", " ")
        if "invalid choice" in message:  # e.g. a misspelt command
            import re

            m = re.search(r"invalid choice: '([^']*)'", message)
            # the choices of the argument the message names ("argument --detect: ..."): every option's together
            # offered x264's "faster" (--preset) for `--detect fastest`
            named = re.match(r"argument ([^:]+):", message)
            actions = [a for a in self._actions if named and named.group(1) in
                       (*a.option_strings, a.dest, a.metavar, "/".join(a.option_strings))] or self._actions
            choices = [c for a in actions if a.choices for c in a.choices if isinstance(c, str)]
            close = difflib.get_close_matches(m.group(1), choices, n=1, cutoff=0.6) if m else []
            if close:
                message += f"; did you mean {close[0]}?"
        where = self.prog.partition(" ")[2]  # "anonymize" for "faceveil anonymize"
        self.exit(2, f"faceveil: error: {where + ': ' if where else ''}{message} (see `{self.prog} --help`)\n")
