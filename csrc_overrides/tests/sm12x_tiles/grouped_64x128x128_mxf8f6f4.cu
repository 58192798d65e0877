// Regression pin: SM120/SM121 block-scaled *grouped* GEMM, MXFP8 (A) x MXFP4 (B),
// 64x128x128 tile, Pingpong.  Fails to compile with pristine CUTLASS 4.5.0
// ("TMA requires CTA_Tile and SLayout top-level size equivalence") because the
// SFA smem layout is built from 128-row scale-factor atoms.
#define SM12X_TILE_M 64
#define SM12X_TILE_N 128
#define SM12X_TILE_K 128
#define SM12X_GROUPED 1
#define SM12X_MXF8F4 1
#define SM12X_PINGPONG 1
#include "sm120_bs_tile.cuh"
