"""What ``python recipes/<script>.py --help`` prints: the run command, the run options, the YAML's keys.

A recipe's help is written once, where users already read it: the run
commands are the "To run this recipe" block of the script's docstring, and
each key's meaning is the YAML's own comment on it (the comment at the end of
the key's line and the indented comment lines under it, or else the comment
lines directly above the key). Nothing is imported, built or written.

- ``python recipes/<script>.py --help``: the keys of the first YAML the run
  commands name (``$DATASET`` in a path: the first such YAML on disk);
- ``python recipes/<script>.py hparams/<...>.yaml --help``: the keys of that YAML.

``recipes/build_index.py`` and ``recipes/search.py`` take flags only; their
argparse parser (:func:`flag_parser`) prints the same run commands and every
flag with its default and meaning.
"""

import argparse
import ast
import glob
import math
import os
import re
import sys
import textwrap

__all__ = ["HELP_FLAGS", "run_block", "key_docs", "recipe_help", "print_recipe_help", "flag_parser", "positive_int",
           "positive_number"]

#: The flags that ask for help instead of a run.
HELP_FLAGS = ("-h", "--help")
_WIDTH = 110
_MEANING_COLUMN = 44
_DEFAULT_CHARS = 60
# A comment line that draws a section rule ("# ------ data", "# #####"), not a meaning.
_RULE = re.compile(r"#+\s*[-=#]{3,}.*")
_KEY_LINE = re.compile(r"([A-Za-z_][\w.-]*)\s*:(.*)")
# Tags of values the YAML builds (objects), listed apart from the keys a flag sets.
_BUILT = ("!new:", "!apply:")


def run_block(doc):
    """The "To run this recipe" block of a recipe's docstring (up to its first blank line), or "".

    Example
    -------
    >>> print(run_block("Does X.\\n\\nTo run this recipe:\\n    python recipes/x.py hparams/x.yaml\\n\\nAuthors"))
    To run this recipe:
        python recipes/x.py hparams/x.yaml
    """
    lines = (doc or "").splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("To run this recipe")), None)
    if start is None:
        return ""
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return "\n".join(lines[start:end])


def _split_comment(text):
    """``(value, comment)`` of a line's text: a ``#`` after a blank, outside quotes, starts the comment."""
    quote = None
    for i, char in enumerate(text):
        before = text[i - 1] if i else " "
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"" and (before.isspace() or before in "[{,"):
            quote = char
        elif char == "#" and before.isspace():
            return text[:i].strip(), text[i:].lstrip("#").strip()
    return text.strip(), ""


def _compact(value, lines):
    """A key's value on one line: a block of indented lines becomes ``{a: 1, b: 2}`` or ``[a, b]``."""
    if lines and value.startswith(("[", "{")):  # a flow list or mapping continued on the next lines
        value = " ".join([value] + [line.strip() for line in lines])
    elif lines and not value.startswith(_BUILT):
        items = [line.strip() for line in lines]
        if all(item.startswith("- ") for item in items):
            value = (value + " " if value else "") + "[" + ", ".join(item[2:] for item in items) + "]"
        else:
            value = (value + " " if value else "") + "{" + ", ".join(items) + "}"
    return value if len(value) <= _DEFAULT_CHARS else value[: _DEFAULT_CHARS - 1] + "…"


def key_docs(text):
    """``[(key, default, meaning, built)]`` of a YAML's top-level keys, in file order, read from its text.

    ``default`` is the value as written (on one line), ``meaning`` the key's
    comment ("" if it has none), ``built`` whether the YAML builds an object
    there (``!new:`` / ``!apply:``). Keys starting with ``__`` are left out.

    Example
    -------
    >>> text = '''# ---- data
    ... # Folder of the clips.
    ... data_folder: !PLACEHOLDER
    ... folds: null   # folds scored, e.g. 1
    ...               # (null: all five)
    ... opts:
    ...     batch_size: 4
    ... flags: [--a=1,
    ...         --b=2]
    ... '''
    >>> for row in key_docs(text): print(row)
    ('data_folder', '!PLACEHOLDER', 'Folder of the clips.', False)
    ('folds', 'null', 'folds scored, e.g. 1 (null: all five)', False)
    ('opts', '{batch_size: 4}', '', False)
    ('flags', '[--a=1, --b=2]', '', False)
    """
    docs, above, lines = [], [], text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        match = _KEY_LINE.fullmatch(line)
        if not match:
            stripped = line.strip()
            above = [] if not stripped.startswith("#") or _RULE.fullmatch(stripped) else above + [stripped[1:].strip()]
            continue
        value, comment = _split_comment(match.group(2))
        meaning, block = [comment] if comment else [], []
        while i < len(lines) and (not lines[i].strip() or lines[i][0].isspace()):
            inner = lines[i].strip()
            if inner.startswith("#"):
                if meaning and not block:
                    meaning.append(inner.lstrip("#").strip())
            elif inner:
                block.append(_split_comment(inner)[0])
            i += 1
        if not match.group(1).startswith("__"):
            docs.append((match.group(1), _compact(value, block), " ".join(meaning or above), value.startswith(_BUILT)))
        above = []
    return docs


def _default_yaml(block, root):
    """The first YAML the run commands name that exists under ``root`` (``$VAR`` in the path: any folder)."""
    for name in re.findall(r"hparams/[\w$./-]+?\.yaml", block):
        found = sorted(glob.glob(os.path.join(root, re.sub(r"\$\w+", "*", name))))
        if found:
            return found[0]
    return None


def _key_line(key, default, meaning):
    left = f"  --{key}={default}"
    if not meaning:
        return left
    indent = " " * _MEANING_COLUMN
    long_left = len(left) >= _MEANING_COLUMN - 1  # the meaning starts on the next line
    text = textwrap.fill(meaning, _WIDTH, initial_indent=indent if long_left else left.ljust(_MEANING_COLUMN),
                         subsequent_indent=indent, break_on_hyphens=False)
    return left + "\n" + text if long_left else text


def _script_text(script):
    """``(docstring, source)`` of a script (its source keeps the run commands' line continuations)."""
    try:
        with open(script, encoding="utf-8") as f:
            source = f.read()
        return ast.get_docstring(ast.parse(source)) or "", source
    except (OSError, SyntaxError, ValueError):
        return "", ""


def _run_options_line(run_options):
    """SpeechBrain's run options on a few lines: ``--switch``, ``--option=<default>``, ``--list …``."""
    from speechbrain.utils.run_opts import RunOptions

    defaults = RunOptions().as_dict()
    shown = []
    for name, kind in run_options.items():
        default = defaults.get(name)
        shown.append(f"--{name}" + {"flag": "", "list": " …"}.get(kind, f"={'…' if default is None else default}"))
    return textwrap.fill("SpeechBrain's run options: " + " ".join(shown), _WIDTH, subsequent_indent="  ")


def recipe_help(script, given, run_options):
    """The help text of a recipe whose command line is ``<yaml> [--key=value ...]``.

    Arguments
    ---------
    script : str
        The script's path (its docstring gives the purpose and the "To run this recipe" block).
    given : tuple or None
        ``(path, text)`` of the YAML given on the command line; None: the first YAML the run commands name.
    run_options : dict
        SpeechBrain's run options (``{name: "flag" | "value" | "list"}``).

    Returns
    -------
    str
    """
    folder = os.path.dirname(os.path.abspath(script))
    root = os.path.dirname(folder)
    command = f"python recipes/{os.path.basename(script)}" if os.path.basename(folder) == "recipes" \
        else f"python {script}"
    doc, source = _script_text(script)
    block = run_block(source)
    parts = [part for part in (doc.split("\n\n")[0], block) if part]
    parts.append(f"Usage: {command} <hparams YAML> [--key=value ...] [run options]\n"
                 "Every key of the YAML is a flag (--key=value; --key= is null); the paper code's names of keys "
                 "are accepted too.\n" + _run_options_line(run_options))
    if given is None:
        path = _default_yaml(block, root)
        if path is None:
            parts.append(f"Give the YAML to list its keys: {command} hparams/<...>.yaml --help")
            return "\n\n".join(parts) + "\n"
        with open(path, encoding="utf-8") as f:
            given = (os.path.relpath(path, root), f.read())
        parts.append(f"(The keys of another YAML: {command} <yaml> --help)")
    docs = key_docs(given[1])
    lines = [f"Keys of {given[0]} (--key=default, then its meaning):"]
    lines += [_key_line(key, default, meaning) for key, default, meaning, built in docs if not built]
    built = [key for key, _, _, is_built in docs if is_built]
    if "model" in built:
        lines.append(_key_line("model", "<preset>", "an architecture preset instead of the model keys: a name "
                               "of hparams/models/ (e.g. laion_630k_audioset) or a YAML of model keys"))
    if built:
        lines.append(textwrap.fill("Built by the YAML from the keys above: " + ", ".join(built), _WIDTH,
                                   subsequent_indent="  "))
    parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def print_recipe_help(given, run_options):
    """Prints :func:`recipe_help` of the running script (``__main__``) on stdout."""
    script = getattr(sys.modules.get("__main__"), "__file__", None) or sys.argv[0]
    print(recipe_help(script, given, run_options), end="", flush=True)


class _FlagHelp(argparse.RawDescriptionHelpFormatter):
    """Keeps the docstring's layout and adds each flag's default to its meaning."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.option_strings and action.default not in (None, argparse.SUPPRESS) and "default" not in text:
            text += " (default: %(default)s)"
        return text


def flag_parser(script):
    """The argparse parser of a recipe of flags only: its ``--help`` gives the purpose, flags and run commands."""
    doc, source = _script_text(script)
    return argparse.ArgumentParser(description=doc.split("\n\n")[0], epilog=run_block(source),
                                   formatter_class=_FlagHelp)


def positive_int(text):
    """argparse ``type=`` of a flag that counts something (``--topk``, ``--batch_size``): an integer >= 1.

    Example
    -------
    >>> positive_int("3")
    3
    >>> positive_int("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected a positive integer, got '0'
    """
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def positive_number(text):
    """argparse ``type=`` of a flag that measures something (``--eval_duration``): a finite number > 0.

    Example
    -------
    >>> positive_number("7.5")
    7.5
    >>> positive_number("inf")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected a positive finite number, got 'inf'
    """
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value
