"""cdrflow rater: consumes submitted CDRs, prices them and stores them."""
