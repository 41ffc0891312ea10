"""What counts as a changed setting when stage 0 is reused or a stage resumed (llamavid.train.settings_record)."""

from dataclasses import dataclass, field

from llamavid.train.settings_record import changed_settings, field_defaults


@dataclass
class Inner:
    rate: float = 0.1
    names: list = field(default_factory=list)


@dataclass
class Outer:
    name: str
    inner: Inner
    steps: int = 10


def test_changes_are_named_with_dotted_keys():
    saved = {"name": "a", "inner": {"rate": 0.1, "names": []}, "steps": 10}
    now = {"name": "a", "inner": {"rate": 0.2, "names": ["x"]}, "steps": 10}
    assert changed_settings(saved, now) == ["inner.names: [] -> ['x']", "inner.rate: 0.1 -> 0.2"]
    assert changed_settings(saved, saved) == []


def test_a_setting_added_since_the_record_counts_as_its_default():
    outer = Outer("a", Inner(rate=0.1))
    defaults = field_defaults(outer)
    assert defaults == {"inner": {"rate": 0.1, "names": []}, "steps": 10}  # `name` has no default
    old_record = {"name": "a", "inner": {"names": []}}  # written before `rate` and `steps` existed
    assert changed_settings(old_record, {"name": "a", "inner": {"rate": 0.1, "names": []}, "steps": 10}, defaults) == []
    assert changed_settings(old_record, {"name": "a", "inner": {"rate": 0.5, "names": []}, "steps": 10}, defaults) == [
        "inner.rate: None -> 0.5"
    ]
    # a removed setting, or one without a default, is a change
    assert changed_settings({"name": "a", "gone": 1}, {"name": "a"}, defaults) == ["gone: 1 -> None"]
    assert changed_settings({}, {"name": "a"}, defaults) == ["name: None -> 'a'"]
