"""Bot account lists: ``login:KEY`` entries, as the collection secret contains them.

Entries are separated by line breaks or commas; blank lines and lines that
start with ``#`` are ignored. KEY is the 40-digit uppercase hexadecimal
password transform that LOGIN sends, and the login is everything before the
last colon, so it may contain spaces and Cyrillic letters. Errors name the
entry by its number and login, never by its key.
"""

from dataclasses import dataclass, field

from services.game.password import is_password_hash


@dataclass(frozen=True)
class BotAccount:
    """A game account that the bots log in with."""

    login: str
    key: str = field(repr=False)


def parse_bot_accounts(text: str, source: str = "the bot list") -> list[BotAccount]:
    """Parse ``login:KEY`` entries; raise ValueError naming ``source`` and the bad entry.

    Two entries whose logins fold to the same account (case, ё and е) are an
    error, because the game server would see one account logged in twice.
    """
    # Imported here: importing the simulator while the services package loads
    # would make `python -m services.game.simulator` warn that it is loaded twice.
    from services.game.simulator import fold_login

    accounts: list[BotAccount] = []
    seen: dict[str, int] = {}
    number = 0
    for line in text.splitlines():
        if line.strip().startswith("#"):
            continue
        for entry in line.split(","):
            entry = entry.strip()
            if not entry:
                continue
            number += 1
            login, separator, key = entry.rpartition(":")
            login = login.strip()
            if not separator or not login:
                raise ValueError(f"{source}: entry {number} is not login:KEY")
            if not is_password_hash(key.strip()):
                raise ValueError(
                    f"{source}: the key of entry {number} (login {login!r}) must be 40 uppercase hexadecimal digits"
                )
            folded = fold_login(login)
            if folded in seen:
                raise ValueError(f"{source}: entry {number} repeats the login {login!r} of entry {seen[folded]}")
            seen[folded] = number
            accounts.append(BotAccount(login, key.strip()))
    if not accounts:
        raise ValueError(f"{source} contains no login:KEY entry")
    return accounts
