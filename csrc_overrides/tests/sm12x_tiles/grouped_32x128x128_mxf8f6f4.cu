// SM120/SM121 block-scaled grouped GEMM, MXFP8 x MXFP4, 32x128x128, Pingpong.
// The (2,2,1) Pingpong warp layout covers 2 x 16 = 32 rows, so 32 is the
// smallest TileM; the SM120 auto epilogue subtile (64x32) does not divide it,
// so an explicit 32x32 subtile is used.
#define SM12X_TILE_M 32
#define SM12X_TILE_N 128
#define SM12X_TILE_K 128
#define SM12X_GROUPED 1
#define SM12X_MXF8F4 1
#define SM12X_PINGPONG 1
#define SM12X_EPI_TILE_M 32
#include "sm120_bs_tile.cuh"
