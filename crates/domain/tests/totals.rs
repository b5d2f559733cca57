//! Property tests of the one totals function: totals are the sums of their parts, and no line
//! drifts more than half a minor unit from its exact value.

use chrono::DateTime;
use daftar_domain::invoice::DocumentDiscount;
use daftar_domain::tax::{exact_line_net, vat_on};
use daftar_domain::{
    Amount, Invoice, InvoiceId, InvoiceKind, Line, LineId, Quantity, Rate, VatCategory, VatCode, compute_totals,
};
use proptest::prelude::*;
use uuid::Uuid;

fn category() -> impl Strategy<Value = VatCategory> {
    prop_oneof![
        Just(VatCategory::standard()),
        Just(VatCategory::with_exemption(VatCode::Z, "VATEX-SA-32")),
        Just(VatCategory::with_exemption(VatCode::E, "VATEX-SA-29")),
        Just(VatCategory::of(VatCode::O)),
        (1i64..=10_000).prop_map(|bp| VatCategory { rate: Rate::from_raw(bp), ..VatCategory::standard() }),
    ]
}

fn line() -> impl Strategy<Value = Line> {
    (1i64..=10_000_000, 0i64..=100_000_000, 0i64..=100, category(), any::<u128>()).prop_map(
        |(qty, price, discount_pct, vat, id)| {
            let quantity = Quantity::from_raw(qty);
            let unit_price = Amount::from_raw(price);
            // A discount of up to 100% of the (rounded-down) line amount.
            let max = (i128::from(qty) * i128::from(price) / 1000) as i64;
            let discount = Amount::from_raw(max * discount_pct / 100);
            Line {
                id: LineId::from_uuid(Uuid::from_u128(id)),
                description: "x".into(),
                quantity,
                unit_price,
                discount,
                vat,
            }
        },
    )
}

fn invoice(lines: Vec<Line>, discount_pct: i64) -> Invoice {
    let mut invoice = Invoice::draft(InvoiceId::from_uuid(Uuid::nil()), InvoiceKind::Simplified, DateTime::UNIX_EPOCH);
    if let Some(first) = lines.first() {
        let category_net: i64 = compute_totals(&Invoice { lines: lines.clone(), ..invoice.clone() })
            .unwrap()
            .breakdown
            .iter()
            .find(|c| c.code == first.vat.code && c.rate == first.vat.rate)
            .map(|c| c.taxable.raw())
            .unwrap();
        invoice.discount = Some(DocumentDiscount {
            amount: Amount::from_raw(category_net * discount_pct / 100),
            vat: first.vat.clone(),
            reason: String::new(),
        });
    }
    invoice.lines = lines;
    invoice
}

proptest! {
    #[test]
    fn totals_are_the_sums_of_their_parts(lines in prop::collection::vec(line(), 0..40), discount_pct in 0i64..=100) {
        let invoice = invoice(lines, discount_pct);
        let totals = compute_totals(&invoice).unwrap();
        let line_sum: i64 = totals.lines.iter().map(|l| l.net.raw()).sum();
        prop_assert_eq!(totals.lines_net.raw(), line_sum, "lines_net is the sum of line nets");
        let taxable_sum: i64 = totals.breakdown.iter().map(|c| c.taxable.raw()).sum();
        prop_assert_eq!(totals.net.raw(), taxable_sum, "net is the sum of taxable amounts");
        prop_assert_eq!(totals.net.raw(), totals.lines_net.raw() - totals.discount.raw());
        let vat_sum: i64 = totals.breakdown.iter().map(|c| c.vat.raw()).sum();
        prop_assert_eq!(totals.vat.raw(), vat_sum, "vat is the sum of category VAT");
        prop_assert_eq!(totals.gross.raw(), totals.net.raw() + totals.vat.raw());
        for c in &totals.breakdown {
            prop_assert_eq!(c.vat, vat_on(c.taxable, c.rate), "category VAT is computed on its taxable amount");
        }
    }

    #[test]
    fn no_line_drifts_more_than_half_a_minor_unit(line in line()) {
        let invoice = invoice(vec![line.clone()], 0);
        let totals = compute_totals(&invoice).unwrap();
        let exact = exact_line_net(line.quantity, line.unit_price, line.discount); // in 1/1000 minor
        let rounded = i128::from(totals.lines[0].net.raw()) * 1000;
        prop_assert!((rounded - exact).abs() <= 500, "line net {} vs exact {}/1000", rounded / 1000, exact);
    }

    #[test]
    fn category_vat_never_drifts_more_than_a_cent_per_line_from_exact(lines in prop::collection::vec(line(), 1..40)) {
        let invoice = invoice(lines.clone(), 0);
        let totals = compute_totals(&invoice).unwrap();
        // Exact VAT in units of 1/(1000*10000) minor, summed over lines without any rounding.
        let exact: i128 = lines.iter().map(|l| exact_line_net(l.quantity, l.unit_price, l.discount) * i128::from(l.vat.rate.raw())).sum();
        let computed = i128::from(totals.vat.raw()) * 1000 * 10_000;
        let bound = i128::try_from(lines.len()).unwrap() * 1000 * 10_000; // 0.01 per line
        prop_assert!((computed - exact).abs() <= bound);
    }
}

#[test]
fn worked_example_matches_hand_computation() {
    // 3 × 33.33 = 99.99; 2.5 × 10.10 − 1.00 = 24.25; zero-rated 1 × 50.
    let mk = |q: &str, p: &str, d: &str, vat: VatCategory, n: u128| Line {
        id: LineId::from_uuid(Uuid::from_u128(n)),
        description: "x".into(),
        quantity: q.parse().unwrap(),
        unit_price: p.parse().unwrap(),
        discount: d.parse().unwrap(),
        vat,
    };
    let mut invoice = Invoice::draft(InvoiceId::from_uuid(Uuid::nil()), InvoiceKind::Simplified, DateTime::UNIX_EPOCH);
    invoice.lines = vec![
        mk("3", "33.33", "0", VatCategory::standard(), 1),
        mk("2.5", "10.10", "1", VatCategory::standard(), 2),
        mk("1", "50", "0", VatCategory::with_exemption(VatCode::Z, "VATEX-SA-32"), 3),
    ];
    let totals = compute_totals(&invoice).unwrap();
    assert_eq!(totals.lines[1].net.to_string(), "24.25");
    assert_eq!(totals.net.to_string(), "174.24");
    // 15% of 124.24 = 18.636 → 18.64
    assert_eq!(totals.vat.to_string(), "18.64");
    assert_eq!(totals.gross.to_string(), "192.88");
    assert_eq!(totals.breakdown.len(), 2);
}
