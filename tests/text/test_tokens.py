"""HumanML3D `word/POS` tokens of captions, against upstream's spaCy tags."""

from scl_ray.motion.humanml3d import Caption
from scl_ray.text.tokens import tokenize

UNIVERSAL_TAGS = {"ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON",
                  "PROPN", "SCONJ", "VERB", "X"}


def test_tokenize_matches_upstream_examples_and_format():
    # Lines from HumanML3D's README, tagged there by spaCy.
    assert " ".join(tokenize("a man kicks something or someone with his left leg.")) == (
        "a/DET man/NOUN kick/VERB something/PRON or/CCONJ someone/PRON with/ADP his/DET left/ADJ leg/NOUN")
    assert " ".join(tokenize("the standing person kicks with their left foot before going back to their "
                             "original stance.")) == (
        "the/DET stand/VERB person/NOUN kick/VERB with/ADP their/DET left/ADJ foot/NOUN before/ADP "
        "go/VERB back/ADV to/ADP their/DET original/ADJ stance/NOUN")
    assert tokenize("a jump")[1] == "jump/NOUN" and tokenize("he jumps")[1] == "jump/VERB"
    assert tokenize("he takes two small steps to sit")[4:] == ("step/NOUN", "to/PART", "sit/VERB")
    assert tokenize("a half-turn, 2 times!") == ("a/DET", "halfturn/NOUN", "time/NOUN")
    for text in ["someone runs counter-clockwise in a circle", "the person's arms swing wildly",
                 "he doesn't stop; she spun and fell"]:
        tokens = tokenize(text)
        assert all(t.split("/")[1] in UNIVERSAL_TAGS and t.split("/")[0].isalpha() for t in tokens)
        Caption(text, tokens)
