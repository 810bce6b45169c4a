"""Caption tokenizer: the tokens the COCO caption metrics score, made with NLTK (no downloaded NLTK data).

pycocoevalcap scores captions after its PTB tokenizer: Stanford's PTBTokenizer in Java
(`-preserveLines -lowerCase`), then the tokens in its PUNCTUATIONS list dropped. The vocabulary is
counted on the same tokens, so every word the metrics reward is one the model can say: `t-shirt`,
`do` + `n't`, `dog` + `'s`, `st.`, `café`, `собака` (and `-lrb-` for "(": the toolkit's list names
`-LRB-` in capitals, so it keeps the lowercased one).

`tokenize` is NLTK's Treebank tokenizer plus the few rules by which Stanford's lexer differs from it
(periods, abbreviations, hyphens and quotes at word edges, a few symbols). tests/test_tokenizer.py
runs the toolkit itself on every caption of the shared data sets and fails on any difference.
`detokenize` makes text for people (`do n't` -> `don't`); tokenizing that text gives the same tokens.
"""
from __future__ import annotations

import re
from typing import Iterable

from nltk.tokenize.treebank import TreebankWordDetokenizer, TreebankWordTokenizer

# pycocoevalcap.tokenizer.ptbtokenizer.PUNCTUATIONS, copied so that tokenizing needs no Java toolkit import
# (a test checks the two lists are equal).
TOOLKIT_PUNCTUATION = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                                 ".", "?", "!", ",", ":", "-", "--", "...", ";"])

# Stanford maps typographic quotes, dashes and the ellipsis to ASCII before tokenizing.
_NORMALISE = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
                            "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"', "\u00a0": " ",
                            "\u2026": " ... ", "\u2013": " -- ", "\u2014": " -- "})

# --- Periods. Stanford splits a word-final period everywhere (Treebank only at the end of the text),
# except after the abbreviations below (checked with the Java tokenizer: kept in lower case too),
# acronyms like t.v., and single letters (`w. centre`).
_ABBREVIATIONS = frozenset("""
    mr mrs ms dr drs prof profs sen sens rep reps atty lt col gen gov govs adm rev maj sgt cpl pvt mt capt
    st ste ave blvd rd sq ft pres lieut hon brig cmdr comdr pfc spc supt det mme mlle messrs jr sr bros esq
    inc co cos corp pty ltd plc dept bhd assn univ intl sys invt elec natl mfg mtg tel etc al seq vs cf
    jan feb mar apr jun jul aug sep sept oct nov dec mon tue tues wed thu thurs fri bldg est ext ph
    ala ariz calif colo conn ct dak fla ga ind kan kans ky md mich minn mo mont neb nev okla penn tenn
    va vt wis wisc wyo alex wm jos cie treas""".split())
_BEFORE_NUMBERS = frozenset(["no", "nos"])          # `no. 5` keeps its period, `no.` alone does not
_ACRONYM = re.compile(r"[a-z](?:\.[a-z])+")
# A single letter's period is split off before these capitalised words (Stanford reads a sentence start).
_SENTENCE_STARTS = frozenset("""A An The This That These It He She We They There Their In At After While
    Since When What If Then But So Yet Some Many More Other Such One Last Our Her You Here Now However""".split())
_WORD_DOTS = re.compile(r"(?<![^\s(\[{\"'`])((?:[^\s(\[{\"'`]\S*?)?)(\.+)(?=[\s)\]}\"'!?]|$)")
_NEXT_WORD = re.compile(r"\s*$|\s+(\w+)")
_LEADING_DOT = re.compile(r"(?<![^\s\"'(\[{])\.+(?=[^\W\d_])")      # `.neck` -> `. neck`; `.5` stays


def _keeps_period(word: str, text: str, end: int) -> bool:
    if word in _ABBREVIATIONS or _ACRONYM.fullmatch(word):
        return True
    after = _NEXT_WORD.match(text, end)             # None when a quote or bracket follows
    following = after.group(1) if after else None   # None at the end of the caption too
    if word in _BEFORE_NUMBERS:
        return following is not None and following[0].isdigit()
    if len(word) == 1 and "a" <= word <= "z":
        if after is not None and following is None:
            return False    # at the end Stanford reads on into the next caption of its batch: usually "A ..."
        return following not in _SENTENCE_STARTS
    return False


def _word_dots(m: re.Match) -> str:
    if len(m.group(2)) == 1 and _keeps_period(m.group(1).lower(), m.string, m.end()):
        return m.group(0)
    return f"{m.group(1)} ."


def _split_periods(text: str) -> str:
    """Runs on the original case: whether `x.` keeps its period depends on the capital of the next word."""
    return _WORD_DOTS.sub(_word_dots, text)


# --- NLTK's Treebank rules, in the stdlib `re` engine (NLTK 3.10 wraps each in a timed `regex` pattern,
# twice as slow on 500k captions), with the rules where Stanford differs changed.
def _stdlib(pattern) -> re.Pattern:
    return re.compile(pattern.pattern)


def _punctuation_rule(rule: tuple) -> tuple:
    pattern, repl = rule
    if pattern.pattern == "[;@#$%&]":               # Stanford keeps `#hash` and `a@b` whole, splits `#1`
        return re.compile(r"[;$%&]|[@#](?![^\W\d_])"), repl
    if pattern.pattern == "[?!]":                   # ...and keeps `?!` and `!!` as one token
        return re.compile(r"[?!]+"), repl
    return _stdlib(pattern), repl


class _StanfordTreebank(TreebankWordTokenizer):
    STARTING_QUOTES = [(_stdlib(p), r) for p, r in TreebankWordTokenizer.STARTING_QUOTES]
    # The final-period rule is dropped: _split_periods has handled every period.
    PUNCTUATION = [_punctuation_rule(rule) for rule in TreebankWordTokenizer.PUNCTUATION
                   if not rule[0].pattern.endswith(r"\s*$")]
    PARENS_BRACKETS = (re.compile(r"[\]\[(){}]"), TreebankWordTokenizer.PARENS_BRACKETS[1])   # `<` `>` stay
    DOUBLE_DASHES = (_stdlib(TreebankWordTokenizer.DOUBLE_DASHES[0]), TreebankWordTokenizer.DOUBLE_DASHES[1])
    ENDING_QUOTES = [(_stdlib(p), r) for p, r in TreebankWordTokenizer.ENDING_QUOTES]


_TREEBANK = _StanfordTreebank()

# Stanford splits these where Treebank does not: `'s-eye-view`, `rif=ding`, `a+b` (not `+5`), a slash at a
# word's edge (not `tub/shower`), and am/pm after a clock time (`5:54pm`).
_STANFORD_SPLITS = re.compile(r"'(?:s|m|d|ll|re|ve)(?=-)|[=*~^|\\]|\+(?!\d)|/(?![^\s/])|(?<![^\s/])/"
                              r"|(?<=\d:\d\d)(?=[^\W\d_])")

# --- Tokens after Treebank.
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_UNBRACKET = {v: k for k, v in _BRACKETS.items()}
# A leading apostrophe is an opening quote unless it starts one of these (or a year: '90s).
_APOSTROPHE_WORDS = frozenset(["'s", "'m", "'d", "'ll", "'re", "'ve", "'n", "'n'", "'em", "'cause", "'til", "'t"])
_YEAR = re.compile(r"'\d+s?")


def _finish(token: str) -> str:
    """One Treebank token as Stanford writes it; '' when it is only punctuation Stanford splits off."""
    if token in _BRACKETS:
        return _BRACKETS[token]
    if token[0] == "'" and len(token) > 1 and token not in _APOSTROPHE_WORDS and not _YEAR.fullmatch(token):
        token = token.lstrip("'`")
    if "-" in token and token.strip("-"):           # `old- fashioned`, `-ependent`; `-5` is a number
        token = token.rstrip("-")
        if token[0] == "-" and not token[1].isdigit():
            token = token.lstrip("-")
    return token


def _treebank_tokens(text: str) -> list[str]:
    """The full path, for lowercased text whose periods are already split."""
    text = _STANFORD_SPLITS.sub(r" \g<0> ", _LEADING_DOT.sub(". ", text))
    out: list[str] = []
    for token in _TREEBANK.tokenize(text):
        if token == "'" and out and out[-1] == "'n":   # Treebank splits `'n'` (rock 'n' roll); Stanford does not
            out[-1] = "'n'"
            continue
        token = _finish(token)
        if token and token not in TOOLKIT_PUNCTUATION:
            out.append(token)
    return out


# --- A shortcut for most captions (letters, digits, spaces, commas, periods): there every rule above
# reduces to splitting on spaces and commas not before a digit; tests check it gives the full path's tokens.
_PLAIN = re.compile(r"[a-z0-9\s.,]*")
_PLAIN_COMMA = re.compile(r",(?!\d)")
# Treebank's contractions without an apostrophe (MacIntyreContractions.CONTRACTIONS2: can|not, gon|na, ...).
_SPLIT_WORDS = re.compile(r"\b(?:cannot|gimme|gonna|gotta|lemme|wanna)\b")


def _is_plain(text: str) -> bool:
    return (_PLAIN.fullmatch(text) is not None and ".." not in text and ",," not in text
            and _LEADING_DOT.search(text) is None and _SPLIT_WORDS.search(text) is None)


def _prepare(caption: str) -> str:
    if not caption.isascii():
        caption = caption.translate(_NORMALISE)
    return _split_periods(caption).lower()


def tokenize(caption: str) -> list[str]:
    """Lowercase tokens as the COCO toolkit's PTB tokenizer gives them, its punctuation dropped."""
    text = _prepare(caption)
    if _is_plain(text):
        return [t for t in _PLAIN_COMMA.sub(" ", text).split() if t != "."]
    return _treebank_tokens(text)


_DETOKENIZER = TreebankWordDetokenizer()
_LETTER_PERIOD = re.compile(r"[a-z]\.")


def detokenize(tokens: Iterable[str]) -> str:
    """Text for people: `do n't` -> `don't`, `dog 's` -> `dog's`, `-lrb-` -> `(`; tokenize() gives the tokens back."""
    words = [_UNBRACKET.get(t, t) for t in tokens]
    text = _DETOKENIZER.detokenize(words)
    if words and _LETTER_PERIOD.fullmatch(words[-1]):
        text += " ."    # at the very end `p.` would lose its period (see _keeps_period)
    return text
