//! Variant names: every documented spelling parses to its variant (case, `-` and `_`
//! ignored), `Display` round-trips, and anything else is `LoraError::UnknownVariant` naming
//! the string as given.

#![allow(clippy::unwrap_used, missing_docs)]

use lora_conv::ConvVariant;
use lora_core::LoraError;

#[test]
fn every_spelling_parses_to_its_variant() {
    for (names, want) in [
        (
            &["hf", "HF", "lora", "LoRA", "locon", "Lo-Con"][..],
            ConvVariant::LoCon,
        ),
        (
            &["tucker2", "Tucker_2", "tucker", "TUCKER"][..],
            ConvVariant::Tucker2,
        ),
        (&["cp", "CP", "cpd", "c_p"][..], ConvVariant::Cp),
    ] {
        for name in names {
            assert_eq!(name.parse::<ConvVariant>().unwrap(), want, "`{name}`");
        }
    }
    for v in ConvVariant::BUILTIN {
        assert_eq!(v.to_string().parse::<ConvVariant>().unwrap(), v, "{v}");
        assert_eq!(v.to_string(), v.name());
    }
    assert_eq!(
        ConvVariant::BUILTIN.map(ConvVariant::name),
        [
            "locon",
            "tucker2",
            "cp",
            "loha",
            "loha-tucker",
            "lokr",
            "dora"
        ]
    );
}

#[test]
fn other_names_are_unknown_variants_named_as_given() {
    for name in ["", "tucker3", "Cp2", "h f", "lycoris"] {
        let err = name.parse::<ConvVariant>().unwrap_err();
        assert!(
            matches!(&err, LoraError::UnknownVariant { name: given, known }
                if given == name && known.contains("locon") && known.contains("lokr")),
            "{err:?}"
        );
        assert!(err.to_string().contains(&format!("`{name}`")), "{err}");
    }
}
