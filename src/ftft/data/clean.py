"""Text cleaning of Ramponi & Tonelli (2022), shared by CAD (training) and DynaHate (OOD tests): a port of
``clean_text`` and its helpers in their ``scripts/1.prepare-data.py`` (l. 228-287), same regular expressions,
same order. Nothing is stripped here (``ftft.data.cad`` emulates their file round trips). ``keep_emojis=False``
(their ``-E``) needs ``demoji``, which is not a dependency.
"""

from __future__ import annotations

import functools
import re
from html import unescape

from ..errors import FtftError

# R&T line 259
EMAIL_RE = re.compile(r"(?i)\b[A-Z0-9._%+-]+@[A-Z0-9.-]+\.[A-Z]{2,}\b")
# R&T lines 241-245 (replace_cad_urls)
CAD_MD_HTTPS_RE = re.compile(r"\[([^\[\]]+)\]\((https:\/\/(.*?))\)")
CAD_MD_COMPOSE_RE = re.compile(r"\[([^\[\]]+)\]\((\/message\/compose(.*?))\)")
CAD_MD_SUBREDDIT_RE = re.compile(r"\[([^\[\]]+)\]\((\/r\/(.*?))\)")
CAD_URL_RE = re.compile(r"http(s?):\/\/[^\r\n\t\f\v )\]\}]+")
CAD_WWW_RE = re.compile(r"www\.\S+")
# R&T lines 264-265 (Reddit mentions)
CAD_USER_RE = re.compile(r"\/u\/\w+")
CAD_SUBREDDIT_RE = re.compile(r"\/r\/\w+")
# R&T lines 268-269 (Twitter/Gab/Stormfront)
AT_USER_RE = re.compile(r"@[A-Za-z0-9_-]+")
OTHER_URL_RE = re.compile(r"http[^\r\n\t\f\v )\]\}]+")
# R&T line 276
HASHTAG_RE = re.compile(r"#[A-Za-z0-9]+")


@functools.lru_cache(maxsize=1)
def _wordsegment():
    """The ``wordsegment`` module with its tables loaded (once per process)."""
    import wordsegment as ws

    ws.load()
    return ws


def convert_emojis_to_text(text: str) -> str:
    """R&T ``convert_emojis_to_text``: every emoji -> `` [EMOJI] `` (only with keep_emojis=False)."""
    try:
        import demoji
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise FtftError(
            "clean_text(keep_emojis=False) needs the 'demoji' package (Ramponi & Tonelli's -E option); "
            "it is not a dependency of ftft: install it or keep emojis"
        ) from exc
    return demoji.replace(text, repl=" [EMOJI] ")


def regex_match_segmentation(match: re.Match) -> str:
    """R&T ``regex_match_segmentation``: a hashtag match -> its words joined by spaces."""
    return " ".join(_wordsegment().segment(match.group(0)))


def replace_cad_urls(text: str) -> str:
    """R&T ``replace_cad_urls`` (after dongpng/cad_naacl2021): Reddit markdown links and URLs."""
    text = CAD_MD_HTTPS_RE.sub(r"\1", text)
    text = CAD_MD_COMPOSE_RE.sub(r"\1", text)
    text = CAD_MD_SUBREDDIT_RE.sub(r"\1", text)
    text = CAD_URL_RE.sub("[URL]", text)  # excludes trailing parentheses too
    text = CAD_WWW_RE.sub("[URL]", text)
    return text


def clean_text(text: str, dataset_name: str = "cad", keep_emojis: bool = True) -> str:
    """R&T ``clean_text(text, dataset_name, keep_emojis)``, step for step (see the module doc)."""
    text = unescape(text)  # HTML entities
    text = text.lower()
    if dataset_name == "stormfront":  # space-split URLs of noisy Stormfront data
        text = text.replace("http : //", "http://")
        text = text.replace("https : //", "https://")
        for special_char in ["_", "=", "&", "?", "%", "(", ")", "..."]:
            text = text.replace(" " + special_char + " ", special_char)
    text = EMAIL_RE.sub("[EMAIL]", text)
    if dataset_name == "cad":
        text = replace_cad_urls(text)  # composite [string](url) on Reddit
        text = CAD_USER_RE.sub("[USER]", text)  # /u/user
        text = CAD_SUBREDDIT_RE.sub("[USER]", text)  # /r/subreddit
    else:  # inverted order to avoid replacing @http-like mentions
        text = AT_USER_RE.sub("[USER]", text)
        text = OTHER_URL_RE.sub("[URL]", text)
    if keep_emojis is False:
        text = convert_emojis_to_text(text)
    text = HASHTAG_RE.sub(regex_match_segmentation, text)
    text = text.replace("\n", " ")
    text = text.replace("\t", " ")
    text = text.replace("[linebreak]", " ")  # CAD's newline token
    text = text.replace("\xa0", " ")  # no-break space
    text = text.replace("\u200d", " ")  # zero-width joiner
    return text
