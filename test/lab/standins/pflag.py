"""Command-line parsing as spf13/pflag does it, for the kubectl and kubelet stand-ins (pure, no I/O).

Both real tools parse their flags with pflag (kubectl through cobra; the kubelet with its own
FlagSet): `--name=value` and `--name value` for flags that take a value, `--name` / `--name=false`
for booleans (`--name false` leaves `false` as an argument), shorthands `-n value`, `-nvalue`,
`-n=value` and grouped booleans (`-Ab`), `--` ends the flags, flags and arguments may be mixed.
The error texts are pflag's (flag.go, parseLongArg / parseSingleShortArg).
"""
from __future__ import annotations

TRUE_WORDS = {'1', 't', 'T', 'TRUE', 'true', 'True'}
FALSE_WORDS = {'0', 'f', 'F', 'FALSE', 'false', 'False'}


class FlagError(Exception):
    """A flag pflag would refuse; the message is pflag's error text."""


def parse_bool(flag: str, value: str) -> bool:
    """strconv.ParseBool, with pflag's error for a value it refuses."""
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise FlagError(f'invalid argument "{value}" for "{flag}" flag: strconv.ParseBool: parsing "{value}": invalid syntax')


def parse(argv: list[str], values: set[str], bools: set[str], shorthands: dict[str, str] | None = None,
          repeated: set[str] = frozenset()) -> tuple[dict, list[str]]:
    """(flags, arguments): a value flag maps to its string (a list for `repeated` ones, every use
    kept), a boolean to True/False. Raises FlagError for an unknown flag, a missing value or a bad
    boolean, with pflag's message."""
    shorthands = shorthands or {}
    flags: dict = {}
    args: list[str] = []

    def store(name: str, value: str, shown: str) -> None:
        if name in bools:
            flags[name] = parse_bool(shown, value)
        elif name in repeated:
            flags.setdefault(name, []).append(value)
        else:
            flags[name] = value

    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == '--':
            args += argv[i:]
            break
        if len(arg) < 2 or not arg.startswith('-'):
            args.append(arg)
            continue
        if arg.startswith('--'):
            name, eq, value = arg[2:].partition('=')
            if not name or name.startswith('-') or name.startswith('='):
                raise FlagError(f'bad flag syntax: {arg}')
            if name not in values and name not in bools:
                raise FlagError(f'unknown flag: --{name}')
            if eq:
                store(name, value, f'--{name}')
            elif name in bools:
                flags[name] = True
            elif i < len(argv):
                store(name, argv[i], f'--{name}')
                i += 1
            else:
                raise FlagError(f'flag needs an argument: {arg}')
            continue
        shorts = arg[1:]
        while shorts:
            letter, shorts = shorts[0], shorts[1:]
            name = shorthands.get(letter)
            if name is None:
                raise FlagError(f"unknown shorthand flag: '{letter}' in -{letter}{shorts}")
            if shorts.startswith('='):
                store(name, shorts[1:], f'-{letter}, --{name}')
                shorts = ''
            elif name in bools:
                flags[name] = True
            elif shorts:
                store(name, shorts, f'-{letter}, --{name}')
                shorts = ''
            elif i < len(argv):
                store(name, argv[i], f'-{letter}, --{name}')
                i += 1
            else:
                raise FlagError(f"flag needs an argument: '{letter}' in -{letter}")
    return flags, args
