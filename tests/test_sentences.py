"""Sentence splitting and boilerplate dropping, on tricky cases taken from the seed articles."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.sentences import is_boilerplate, split_sentences

RAW = Path(__file__).resolve().parent.parent / "data" / "raw"


def texts(text: str) -> list[str]:
    return [s.text for s in split_sentences(text)]


@pytest.mark.parametrize(
    "text",
    [
        "Saat menghadiri acara itu, Pj. Bupati Nurkholis menyampaikan pesan kepada ASN.",
        "Dalam kesempatan tersebut, Pjs. Gubernur Sudirman juga mengapresiasi Bawaslu.",
        "Netralitas ASN di Kab. Kediri Diragukan, Oknum Pejabat Diduga Terlibat Kampanye",
        "“Berdasarkan Undang-Undang No. 5/2014 tentang ASN, ASN dilarang menjadi anggota "
        "atau pengurus partai politik,” jelas Edy.",
        "Kapolres Kediri Kota AKBP. Bramastyo Priaji memberi arahan.",
        "Spanduk, baliho, kaos dll. dibagikan kepada warga di Kecamatan Ngasem.",
        "Anggaran bantuan mencapai Rp 1.500.000 per keluarga pada 2024.",
        "Rapat digelar Rabu (23/10/2024) di Balai Kota.",
        "Bupati H. Ahmad Yani hadir dalam deklarasi itu.",
    ],
)
def test_no_split_inside_a_sentence(text: str) -> None:
    assert texts(text) == [text]


def test_quote_keeps_attribution_and_day_date_fragment_joins() -> None:
    text = (
        "”Mari kita menjaga kedamaian, kita ciptakan keharmonisan,” ucap Deny. Jum’at (22/11/2024)."
    )
    assert texts(text) == [text]


def test_multi_sentence_quote_splits_and_last_part_keeps_attribution() -> None:
    text = (
        "“Saya berharap masyarakat tidak mudah terpancing. Saya dan Ibu Mudawamah ada "
        'untuk Kabupaten Kediri," katanya. Deny juga merasa bahagia.'
    )
    assert texts(text) == [
        "“Saya berharap masyarakat tidak mudah terpancing.",
        'Saya dan Ibu Mudawamah ada untuk Kabupaten Kediri," katanya.',
        "Deny juga merasa bahagia.",
    ]


def test_question_and_lowercase_continuation() -> None:
    assert texts("Mengapa birokrasi harus netral? Karena melayani. mengingat hal itu.") == [
        "Mengapa birokrasi harus netral?",
        "Karena melayani. mengingat hal itu.",
    ]


@pytest.mark.parametrize(
    "line",
    [
        "Baca Juga: Netralitas ASN di Kab. Kediri Diragukan",
        "BACA JUGA:KPU Bungo Ingatkan Badan Ad Hoc",
        "Baca juga: Pemkab Pasuruan Siap Berkontribusi",
        "Editor : Redaktur",
        "Reporter : Jennifer Agustia",
        "Kategori :",
        "Rabu 23 Oct 2024 - 20:31 WIB",
        "(***)",
        "(red)",
    ],
)
def test_boilerplate_lines_are_dropped(line: str) -> None:
    assert is_boilerplate(line)
    assert texts(f"Kalimat pertama.\n{line}\nKalimat kedua.") == [
        "Kalimat pertama.",
        "Kalimat kedua.",
    ]


def test_news_sentences_are_not_boilerplate() -> None:
    assert not is_boilerplate("Editor itu menyebut ASN harus netral.")
    assert not is_boilerplate("Rabu (23/10) Bawaslu menemukan pelanggaran.")


def test_dateline_prefix_and_closing_markers_are_stripped() -> None:
    text = "KOTA KEDIRI - Pj Wali Kota memberi arahan.\nKediri, HNN - Bupati hadir. (red)"
    assert texts(text) == ["Pj Wali Kota memberi arahan.", "Bupati hadir."]
    assert texts("ASN harus netral, pungkas Edy.(*)") == ["ASN harus netral, pungkas Edy."]


def test_headline_without_stop_is_its_own_sentence() -> None:
    assert texts("Wujudkan Pilkada Damai\n\nJAMBI - Pjs Gubernur menegaskan hal itu.") == [
        "Wujudkan Pilkada Damai",
        "Pjs Gubernur menegaskan hal itu.",
    ]


@pytest.mark.parametrize("path", sorted(RAW.glob("*.txt")), ids=lambda p: p.stem)
def test_offsets_point_back_into_the_seed_articles(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    sentences = split_sentences(text)
    assert sentences
    for s in sentences:
        assert text[s.start : s.end] == s.text
        assert s.text == s.text.strip()
        assert not s.text.lower().startswith(("baca juga", "editor", "reporter", "kategori"))
    starts = [s.start for s in sentences]
    assert starts == sorted(starts)


def test_seed_sentence_counts_are_stable() -> None:
    counts = {p.stem[:3]: len(split_sentences(p.read_text())) for p in sorted(RAW.glob("*.txt"))}
    assert counts == {"000": 27, "001": 25, "002": 16, "003": 17, "004": 19}


def test_empty_and_blank_input() -> None:
    assert split_sentences("") == []
    assert split_sentences("  \n\n Baca Juga: apa saja \n") == []
