"""What clinic_log says about itself wherever it shows or exports data."""

NO_ADVICE_NOTICE = "clinic_log records symptoms. It gives no dosing or treatment advice."
