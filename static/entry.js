// The assessment entry and amend forms, enhanced: a running total with its band (or floor), a
// "Now" control for the observed time, and a refusal of a year typed short (0002) before it is
// sent. Progressive enhancement only: without this file the form works the same, and the
// server alone decides the saved total. The script knows no scale: every option's points, the
// pulse's points rules and the bands are data attributes the server renders from the scale file.
(function () {
  "use strict";

  var form = document.querySelector("form.assessment[data-bands]");
  if (!form) {
    return;
  }
  var bands = JSON.parse(form.getAttribute("data-bands"));

  // ---------------------------------------------------------------- the running total

  var itemNames = [];
  form.querySelectorAll("input[type=radio][data-points], input[type=radio][data-not-assessed]")
    .forEach(function (radio) {
      if (itemNames.indexOf(radio.name) === -1) {
        itemNames.push(radio.name);
      }
    });

  function radiosOf(name) {
    return Array.prototype.filter.call(form.elements, function (el) {
      return el.type === "radio" && el.name === name;
    });
  }

  function measurementOf(name) {
    return Array.prototype.find.call(form.elements, function (el) {
      return el.getAttribute("data-item") === name && el.hasAttribute("data-points-rules");
    });
  }

  // The points a measured value earns (MeasurementField's checks, Measurement.points_for's
  // rules), or null when the value is empty or one the server would refuse.
  function measuredPoints(input) {
    var value = input.value.trim();
    if (!/^[0-9]{1,3}$/.test(value)) {
      return null;
    }
    var number = parseInt(value, 10);
    if (number < Number(input.getAttribute("data-minimum")) ||
        number > Number(input.getAttribute("data-maximum"))) {
      return null;
    }
    var rules = JSON.parse(input.getAttribute("data-points-rules"));
    for (var i = 0; i < rules.length; i += 1) {
      if (rules[i][0] === null || number <= rules[i][0]) {
        return rules[i][1];
      }
    }
    return null;
  }

  function answers() {
    var state = { total: 0, notAssessed: 0, unanswered: 0 };
    itemNames.forEach(function (name) {
      var chosen = radiosOf(name).find(function (radio) { return radio.checked; });
      var measurement = measurementOf(name);
      if (chosen && chosen.hasAttribute("data-not-assessed")) {
        state.notAssessed += 1;
      } else if (chosen) {
        state.total += Number(chosen.getAttribute("data-points"));
      } else if (measurement && measuredPoints(measurement) !== null) {
        state.total += measuredPoints(measurement);  // the server derives it the same way
      } else {
        state.unanswered += 1;
      }
    });
    return state;
  }

  function bandFor(total) {
    return bands.find(function (band) { return band.low <= total && total <= band.high; }) || null;
  }

  function plural(count, word) {
    return count + " " + word + (count === 1 ? "" : "s");
  }

  // The same words as Scale.severity (tests/e2e/test_running_total.py holds them together).
  function severity(total, complete, notAssessed) {
    if (complete) {
      var band = bandFor(total);
      return { band: band, floor: null, text: band ? band.label : "No published band" };
    }
    var floor = bandFor(total);
    if (!floor) {
      return { band: null, floor: null, text: "Incomplete" };
    }
    var missing = notAssessed ? plural(notAssessed, "item") + " not assessed" : "items not assessed";
    return { band: null, floor: floor, text: "at least " + floor.label + " — incomplete, " + missing };
  }

  function bandClass(band) {
    return "band-" + band.label.toLowerCase().replace(/ /g, "-");
  }

  var region = document.getElementById("running-total");
  function showTotal() {
    if (!region) {
      return;
    }
    var state = answers();
    var label = region.querySelector(".running-total-label");
    var value = region.querySelector(".running-total-value");
    var words = region.querySelector(".running-total-severity");
    value.textContent = String(state.total);
    if (state.unanswered) {
      // A band only once every item is answered or marked not assessed.
      label.textContent = "Total so far";
      words.textContent = plural(state.unanswered, "item") + " still to answer";
      words.className = "running-total-severity muted";
      return;
    }
    var shown = severity(state.total, state.notAssessed === 0, state.notAssessed);
    label.textContent = "Total";
    words.textContent = shown.text;
    var classes = ["running-total-severity", "band"];
    if (shown.band) {
      classes.push(bandClass(shown.band));
    } else if (shown.floor) {
      classes.push("band-floor", bandClass(shown.floor));
    } else {
      classes.push(state.notAssessed ? "band-incomplete" : "band-none");
    }
    words.className = classes.join(" ");
  }

  // A measured pulse chooses the score it earns, so what is shown is what the server derives.
  form.querySelectorAll("input[data-points-rules]").forEach(function (input) {
    input.addEventListener("input", function () {
      var points = measuredPoints(input);
      if (points === null) {
        return;
      }
      radiosOf(input.getAttribute("data-item")).forEach(function (radio) {
        if (radio.getAttribute("data-points") === String(points)) {
          radio.checked = true;
        }
      });
    });
  });

  form.addEventListener("change", showTotal);
  form.addEventListener("input", showTotal);
  if (region) {
    // Shown before it is filled, so that later changes are announced (a live region must be
    // in the page before its text changes) but the first fill is not.
    region.hidden = false;
    showTotal();
  }

  // ---------------------------------------------------------------- the observed time

  form.querySelectorAll("button[data-now-for]").forEach(function (button) {
    var field = document.getElementById(button.getAttribute("data-now-for"));
    if (!field || !window.Intl || !field.getAttribute("data-timezone")) {
      return;
    }
    // The server's clock, carried forward by this device's: a tablet's own clock may drift.
    var skew = Number(field.getAttribute("data-server-now")) - Date.now();
    var format = new Intl.DateTimeFormat("en-GB", {
      timeZone: field.getAttribute("data-timezone"),
      year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", hourCycle: "h23"
    });
    button.hidden = false;
    button.addEventListener("click", function () {
      var parts = {};
      format.formatToParts(new Date(Date.now() + (isNaN(skew) ? 0 : skew)))
        .forEach(function (part) { parts[part.type] = part.value; });
      field.value = parts.year + "-" + parts.month + "-" + parts.day + "T" +
        parts.hour + ":" + parts.minute;
      field.dispatchEvent(new Event("input", { bubbles: true }));
      field.dispatchEvent(new Event("change", { bubbles: true }));
    });
  });

  // A date field given "2" for its year holds 0002: the min and max attributes make the
  // browser flag it, and this says so next to the field instead of sending it.
  form.querySelectorAll("input[type=datetime-local][min][max]").forEach(function (field) {
    var message = document.getElementById(field.id + "-range");
    if (!message) {
      return;
    }
    var describedBy = field.getAttribute("aria-describedby");
    var invalid = field.getAttribute("aria-invalid");
    function restore(name, value) {
      if (value === null) {
        field.removeAttribute(name);
      } else {
        field.setAttribute(name, value);
      }
    }
    function outOfRange() {
      return field.validity.rangeUnderflow || field.validity.rangeOverflow;
    }
    function clear() {
      if (!message.hidden && !outOfRange()) {
        message.hidden = true;
        restore("aria-describedby", describedBy);
        restore("aria-invalid", invalid);
      }
    }
    field.addEventListener("input", clear);
    field.addEventListener("change", clear);
    form.addEventListener("submit", function (event) {
      if (!outOfRange()) {
        return;
      }
      event.preventDefault();
      message.hidden = false;
      field.setAttribute("aria-describedby", ((describedBy || "") + " " + message.id).trim());
      field.setAttribute("aria-invalid", "true");
      field.focus();
    });
  });
}());
