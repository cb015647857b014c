"""Text cleaning of Ramponi & Tonelli (2022), shared by CAD (training) and DynaHate (OOD tests): a port of
``clean_text`` and its helpers in their ``scripts/1.prepare-data.py`` (l. 228-287), same regular expressions,
same order. Nothing is stripped here (``ftft.data.cad`` emulates their file round trips).
"""

import functools
import re
from html import unescape

from ..errors import FtftError


@functools.lru_cache(maxsize=1)
def _wordsegment():
    """The ``wordsegment`` module with its tables loaded (once per process)."""
    import wordsegment as ws

    ws.load()
    return ws


def regex_match_segmentation(match: re.Match) -> str:
    """R&T ``regex_match_segmentation``: a hashtag match -> its words joined by spaces."""
    return " ".join(_wordsegment().segment(match.group(0)))


def replace_cad_urls(text: str) -> str:
    """R&T ``replace_cad_urls`` (l. 241-245, after dongpng/cad_naacl2021): Reddit markdown links and URLs."""
    text = re.sub(r"\[([^\[\]]+)\]\((https:\/\/(.*?))\)", r"\1", text)
    text = re.sub(r"\[([^\[\]]+)\]\((\/message\/compose(.*?))\)", r"\1", text)
    text = re.sub(r"\[([^\[\]]+)\]\((\/r\/(.*?))\)", r"\1", text)
    text = re.sub(r"http(s?):\/\/[^\r\n\t\f\v )\]\}]+", "[URL]", text)  # excludes trailing parentheses too
    return re.sub(r"www\.\S+", "[URL]", text)


def clean_text(text: str, dataset_name: str = "cad", keep_emojis: bool = True) -> str:
    """R&T ``clean_text(text, dataset_name, keep_emojis)`` (l. 250-287), step for step."""
    text = unescape(text).lower()  # HTML entities
    if dataset_name == "stormfront":  # space-split URLs of noisy Stormfront data
        text = text.replace("http : //", "http://").replace("https : //", "https://")
        for special_char in ["_", "=", "&", "?", "%", "(", ")", "..."]:
            text = text.replace(" " + special_char + " ", special_char)
    text = re.sub(r"(?i)\b[A-Z0-9._%+-]+@[A-Z0-9.-]+\.[A-Z]{2,}\b", "[EMAIL]", text)
    if dataset_name == "cad":
        text = replace_cad_urls(text)  # composite [string](url) on Reddit
        text = re.sub(r"\/r\/\w+", "[USER]", re.sub(r"\/u\/\w+", "[USER]", text))  # /u/user, then /r/subreddit
    else:  # inverted order to avoid replacing @http-like mentions
        text = re.sub(r"http[^\r\n\t\f\v )\]\}]+", "[URL]", re.sub(r"@[A-Za-z0-9_-]+", "[USER]", text))
    if keep_emojis is False:  # convert_emojis_to_text needs demoji, not a dependency; 1.prepare-data.sh passes no -E
        raise FtftError("clean_text(keep_emojis=False), Ramponi & Tonelli's -E option, is not supported: keep emojis")
    text = re.sub(r"#[A-Za-z0-9]+", regex_match_segmentation, text)
    for char in ("\n", "\t", "[linebreak]", "\xa0", "\u200d"):  # CAD's newline token, no-break space, ZW joiner
        text = text.replace(char, " ")
    return text
