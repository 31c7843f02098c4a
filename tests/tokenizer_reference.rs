//! Tokenisation equals the Python reference (`tests/fixtures/minilm/tokenization.json`) exactly.

mod common;

use lorafuse::model::TextTokenizer;

#[test]
fn every_fixture_sentence_tokenises_like_python() {
    let fx = common::json("minilm/tokenization.json");
    let tok = TextTokenizer::from_bytes(&common::model_bytes().tokenizer, 128).unwrap();
    let sentences = fx["sentences"].as_array().unwrap();
    assert!(sentences.len() >= 12);
    for s in sentences {
        let name = s["name"].as_str().unwrap();
        let t = tok.encode(s["text"].as_str().unwrap()).unwrap();
        let ids: Vec<u32> = s["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        let types: Vec<u32> = s["token_type_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        let tokens: Vec<String> = s["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect();
        assert_eq!(t.ids, ids, "ids of {name}");
        assert_eq!(t.type_ids, types, "type ids of {name}");
        assert_eq!(t.tokens, tokens, "tokens of {name}");
        let mask = tok.pad(std::slice::from_ref(&t)).mask;
        let want: Vec<u8> = s["attention_mask"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u8)
            .collect();
        assert_eq!(mask, want, "mask of {name}");
    }
}

#[test]
fn padded_batch_matches_python() {
    let fx = common::json("minilm/tokenization.json");
    let ex = &fx["padded_batch_example"];
    let tok = TextTokenizer::from_bytes(&common::model_bytes().tokenizer, 128).unwrap();
    let texts: Vec<String> = ex["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    let batch = tok.batch(&texts).unwrap();
    let flat = |k: &str| -> Vec<i64> {
        ex[k]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()))
            .collect()
    };
    assert_eq!(batch.ids, flat("input_ids"));
    assert_eq!(batch.type_ids, flat("token_type_ids"));
    assert_eq!(
        batch.mask.iter().map(|&m| m as i64).collect::<Vec<_>>(),
        flat("attention_mask")
    );
}
