"""Dashboard sparklines: totals placed in a small box, lines through complete totals only."""

from clinic_log.charts.spark import HEIGHT, PAD, WIDTH, spark_shape


def test_totals_span_the_box_oldest_left_lowest_at_the_bottom():
    shape = spark_shape([0, 48], [True, True], 0, 48)
    first, last = shape.marks
    assert (first.x, first.y) == (PAD, HEIGHT - PAD)
    assert (last.x, last.y) == (WIDTH - PAD, PAD)
    assert shape.line == f"{PAD:.1f},{HEIGHT - PAD:.1f} {WIDTH - PAD:.1f},{PAD:.1f}"


def test_incomplete_totals_are_marked_but_not_joined():
    shape = spark_shape([10, 30, 20], [True, False, True], 0, 40)
    assert [m.complete for m in shape.marks] == [True, False, True]
    assert len(shape.line.split()) == 2


def test_a_single_total_sits_in_the_middle():
    (mark,) = spark_shape([5], [True], 0, 10).marks
    assert mark.x == WIDTH / 2


def test_no_totals_draw_nothing():
    shape = spark_shape([], [], 0, 48)
    assert shape.marks == () and shape.line == ""


def test_out_of_range_totals_are_clamped_into_the_box():
    high, low = spark_shape([99, -5], [True, True], 0, 48).marks
    assert high.y == PAD and low.y == HEIGHT - PAD
